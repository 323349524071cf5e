"""The composition root: the one place that knows the services, the adapters and the ui together.

``context`` opens a box's data (the store, its parameters, the clock) as one ``Context``;
``kiosk`` wires the kiosk's backend, ``agent`` the daily agent, ``backup`` the backup, retention
and restore services, ``exchange`` the state published to the practice software, ``doctor`` the
checks of ``balise doctor``, ``demo`` the demonstration box (sim extra only). The CLI calls these;
nothing below the CLI imports them."""
