"""Small kiosk widgets."""
