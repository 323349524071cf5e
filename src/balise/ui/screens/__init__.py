"""Kiosk screens: each one presents what one backend call returns."""
