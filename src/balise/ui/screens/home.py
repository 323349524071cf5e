"""Accueil: reader, card, lots by state, mailbox polling, alerts, network — refreshed on events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from balise.domain.lotstate import LotState
from balise.ui.i18n import pick, t
from balise.ui.messages import DevicesChanged
from balise.ui.screens.base import KioskScreen
from balise.ui.widgets.plain import Plain

if TYPE_CHECKING:
    from textual.timer import Timer

    from balise.ui.backend import HomeSummary

REFRESH_S = 5.0
PREPARING_CHECK_S = 0.5  # how soon Accueil says the box is preparing its database


class _HomeFooter(Footer):
    """Accueil's key bar, whose keys come one refresh after the first frame (as a bare Textual
    app's do) rather than before it: BaliseApp.on_ready asks for them again once it has painted.
    Keys made before the first frame cost the first paint their widgets and styles."""

    def bindings_changed(self, screen: Screen[Any]) -> None:
        if getattr(self.app, "painted", True):
            super().bindings_changed(screen)


class HomeScreen(KioskScreen):
    # Styles: styles/home.tcss, read with the app's (BaliseApp.CSS_PATH).
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "sign", "key.sign", id="home-sign"),
        Binding("l", "lots", "key.lots", id="home-lots"),
        Binding("r", "returns", "key.returns", id="home-returns"),
        Binding("a", "alerts", "key.alerts", id="home-alerts"),
        Binding("t", "technician", "key.technician", id="home-technician"),
        Binding("c", "demo_card", "key.card_demo", id="home-demo-card"),
        Binding("i", "setup", "key.setup", id="home-setup"),
        Binding("v", "my_profile", "key.my_profile", id="home-my-profile"),
        Binding("e", "channel", "key.channel", id="home-channel"),
    ]

    # No practitioner yet: the first-start wizard (offered once by itself, then by I).
    no_profile = False
    _setup_offered = False
    _preparing: Timer | None = None  # until the first summary, the box may still be opening

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Vertical(id="home"):
            yield Plain(t("home.loading"), id="reader")
            yield Plain("", id="card")
            yield Plain("", id="lots")
            yield Plain("", id="network")
            yield Plain("", id="purge")
            yield Plain("", id="alerts")
            yield Plain("", id="backup")
            yield Plain("", id="version")
            yield Plain("", id="warnings")
            yield Plain(t("home.hint"), id="hint")
            yield Plain("", id="demo")
        yield _HomeFooter()

    def on_mount(self) -> None:
        self.sub_title = t("home.title")
        demo = self.kiosk.demo
        if demo is not None:
            self.query_one("#demo", Static).update(pick(demo.help_fr, demo.help_en))
        # The first figures come when the app has painted this screen (BaliseApp.on_ready).
        # Returns, alerts and sending happen in the agent: re-read the figures regularly so a
        # practitioner sees the ARLs arrive without pressing a key.
        self.set_interval(REFRESH_S, self.refresh_summary)
        self._preparing = self.set_interval(
            PREPARING_CHECK_S, self._say_preparing, name="preparing"
        )

    def _say_preparing(self) -> None:
        """While the box opens and says it takes long (its database prepared after an update),
        the first line says so instead of « Chargement… »; the first summary replaces it."""
        if self._preparing is not None and getattr(self.backend, "preparing", False):
            self.query_one("#reader", Static).update(t("home.preparing"))

    def on_screen_resume(self) -> None:
        if self.kiosk.painted:
            self.refresh_summary()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "demo_card":
            return self.kiosk.demo is not None
        if action == "setup":
            return self.no_profile
        if action in ("my_profile", "channel"):
            return not self.no_profile and self.kiosk.card.present
        return True

    def on_devices_changed(self, _message: DevicesChanged) -> None:
        self.refresh_bindings()
        self.refresh_summary()

    @work(thread=True, exclusive=True, exit_on_error=False, group="home")
    def refresh_summary(self) -> None:
        summary = self.backend.home()
        self.app.call_from_thread(self._show, summary)

    def _show(self, s: HomeSummary) -> None:
        if self._preparing is not None:  # the box is open: no need to look again
            self._preparing.stop()
            self._preparing = None
        if self.no_profile != (not s.profiles):
            self.no_profile = not s.profiles
            self.refresh_bindings()
        if self.no_profile and not self._setup_offered and self.is_current:
            self._setup_offered = True
            self.action_setup()
        readers = self.kiosk.readers or s.readers
        self.query_one("#reader", Static).update(
            t("home.reader.some", names=", ".join(readers)) if readers else t("home.reader.none")
        )
        self.query_one("#card", Static).update(t("home.card", words=pick(s.card.fr, s.card.en)))
        lines = [
            t(
                "home.profile",
                name=p.name,
                ready=p.counts.get(LotState.READY, 0),
                signed=p.counts.get(LotState.SIGNED, 0) + p.counts.get(LotState.SENDING, 0),
                sent=p.counts.get(LotState.SENT, 0),
                done=p.counts.get(LotState.ACKNOWLEDGED, 0),
                rejected=p.counts.get(LotState.REJECTED, 0),
            )
            for p in s.profiles
        ]
        self.query_one("#lots", Static).update("\n".join(lines) or t("home.no_profile"))
        self.query_one("#network", Static).update(
            "\n".join(
                t("home.network", name=p.name, words=pick(p.network_fr, p.network_en))
                for p in s.profiles
            )
        )
        self.query_one("#purge", Static).update(
            t(
                "home.purge",
                last=s.last_purge or t("home.never"),
                next=s.next_purge or t("home.unknown"),
            )
        )
        alerts = self.query_one("#alerts", Static)
        if s.trust_alerts:
            alerts.update(t("home.alerts.trust", n=s.alerts, trust=s.trust_alerts))
        else:
            alerts.update(t("home.alerts.some", n=s.alerts) if s.alerts else t("home.alerts.none"))
        alerts.set_class(s.alerts > 0, "attention")
        backup = self.query_one("#backup", Static)
        if s.backup_age_hours is None:
            backup.update(t("home.backup.none"))
        elif s.backup_age_hours < 48:
            backup.update(t("home.backup.hours", n=s.backup_age_hours))
        else:
            backup.update(t("home.backup.days", n=s.backup_age_hours // 24))
        backup.set_class(s.backup_too_old, "attention")
        version = self.query_one("#version", Static)
        update = (
            pick(s.last_update_fr, s.last_update_en)
            if s.last_update_fr is not None
            else t("home.update.none")
        )
        version.update(t("home.version", version=s.version, update=update))
        version.set_class(s.update_undone, "attention")
        warnings = []
        if not s.clock_synchronized:
            warnings.append(t("home.clock_unsync"))
        if s.protection_weak:
            warnings.append(t("home.protection_weak"))
        if s.provisioning_minutes_left is not None:
            warnings.append(t("home.provisioning_open", n=s.provisioning_minutes_left))
        if s.disk_full_free_mib is not None:
            warnings.append(t("home.disk_full", n=s.disk_full_free_mib))
        self.query_one("#warnings", Static).update("\n".join(warnings))

    # -- keys ----------------------------------------------------------------------------

    def action_sign(self) -> None:
        from balise.ui.screens.sign import SignScreen

        self.app.push_screen(SignScreen())

    def action_setup(self) -> None:
        from balise.ui.screens.setup import SetupScreen

        self.app.push_screen(SetupScreen())

    def action_my_profile(self) -> None:
        from balise.ui.screens.profile import ProfileScreen

        self.app.push_screen(ProfileScreen())

    @work(exclusive=True, exit_on_error=False, group="channel")
    async def action_channel(self) -> None:
        """The card channel (issue 20): shown as it is when open; else the card is read without
        PIN (tries left), the PIN typed here, and the relay started by the channel's screen."""
        from balise.ui.screens.base import in_thread
        from balise.ui.screens.channel import ChannelScreen
        from balise.ui.screens.dialogs import PinDialog

        backend = self.backend
        state = await in_thread(self, backend.channel_state)
        opening = None
        if state is None or not state.open:
            card = await in_thread(self, backend.card_check)
            if not card.ok:
                self.notify(t("channel.card_refused", why=pick(card.fr, card.en)), timeout=8)
                return
            pin = await self.app.push_screen_wait(PinDialog(card.tries_left))
            if pin is None:
                return

            def opening() -> str | None:
                return backend.open_channel(pin)

        self.app.push_screen(ChannelScreen(backend.channel_state, backend.close_channel, opening))

    def action_lots(self) -> None:
        from balise.ui.screens.lots import LotsScreen

        self.app.push_screen(LotsScreen())

    def action_returns(self) -> None:
        from balise.ui.screens.returns import ReturnsScreen

        self.app.push_screen(ReturnsScreen())

    def action_alerts(self) -> None:
        from balise.ui.screens.alerts import AlertsScreen

        self.app.push_screen(AlertsScreen())

    def action_technician(self) -> None:
        from balise.ui.screens.passphrase import PassphraseScreen

        def entered(ok: bool | None) -> None:
            if ok:
                self.app.run_worker(self.kiosk.enter_technician(), group="mode")

        self.app.push_screen(PassphraseScreen(), entered)

    @work(thread=True, exclusive=True, exit_on_error=False, group="demo")
    def action_demo_card(self) -> None:
        demo = self.kiosk.demo
        if demo is not None:
            words = demo.toggle_card()
            self.app.call_from_thread(self.notify, words, timeout=3)
