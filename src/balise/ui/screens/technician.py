"""Technician mode: parameters per practitioner with the mailbox hygiene findings, the doctor's
checks (protection level said plainly), journal verification with its head, cancel or resend a
lot after a confirmation, and the provisioning window (opened after a confirmation, its LAN
address, host key fingerprint and time left shown, closed early by a key)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Header, Static

from balise.domain.errors import BaliseError
from balise.domain.lotrecord import LotRecord
from balise.domain.lotstate import LotState
from balise.ui.backend import DoctorLine, JournalCheck, ProfileParams
from balise.ui.i18n import language, pick, t
from balise.ui.screens.base import KioskScreen
from balise.ui.screens.dialogs import ConfirmDialog
from balise.ui.screens.lots import lot_columns, lot_table
from balise.ui.widgets.lazy_table import LazyTable
from balise.ui.widgets.plain import Plain

if TYPE_CHECKING:
    from balise.services.provisioning import WindowStatus

View = Literal["intro", "params", "doctor", "journal", "lots", "window", "trust"]
KNOWN_WINDOW_ERRORS = ("no-interface", "no-address")


class TechnicianScreen(KioskScreen):
    CSS_PATH = "../styles/technician.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "view('params')", "key.params", id="tech-params"),
        Binding("m", "edit_params", "key.edit", id="tech-edit"),
        Binding("d", "view('doctor')", "key.doctor", id="tech-doctor"),
        Binding("j", "view('journal')", "key.journal", id="tech-journal"),
        Binding("c", "view('trust')", "key.trust", id="tech-trust"),
        Binding("l", "view('lots')", "key.lots", id="tech-lots"),
        Binding("x", "cancel_lot", "key.cancel_lot", id="tech-cancel-lot"),
        Binding("e", "resend_lot", "key.resend", id="tech-resend-lot"),
        Binding("o", "open_window", "key.window", id="tech-window-open"),
        Binding("f", "close_window", "key.window_close", id="tech-window-close"),
        Binding("escape", "leave", "key.leave", id="tech-leave"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.view: View = "intro"

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Vertical(id="technician"):
            with VerticalScroll(id="tech-scroll"):
                yield Plain(t("tech.intro"), id="tech-content")
            yield lot_table("tech-lots")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = t("tech.title")
        lot_columns(self.query_one("#tech-lots", DataTable))
        self.query_one("#tech-lots", DataTable).display = False
        # The countdown of the provisioning window, read again every second while shown.
        self.set_interval(1.0, self._window_tick, name="window")

    @property
    def content_text(self) -> str:
        return str(self.query_one("#tech-content", Static).render())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("cancel_lot", "resend_lot"):
            return self.view == "lots"
        if action == "close_window":
            return self.view == "window"
        if action == "edit_params":
            return self.view == "params"
        return True

    def action_edit_params(self) -> None:
        from balise.ui.screens.params_edit import ParamEditScreen

        def back(_result: None) -> None:
            self.load("params")

        self.app.push_screen(ParamEditScreen(), back)

    def _show_view(self, view: View) -> None:
        self.view = view
        self.refresh_bindings()
        self.query_one("#tech-lots", DataTable).display = view == "lots"
        self.query_one("#tech-content", Static).update(t("home.loading"))

    def action_view(self, view: View) -> None:
        self._show_view(view)
        if view == "lots":
            self._lots()
        else:
            self.load(view)

    @work(thread=True, exclusive=True, exit_on_error=False, group="tech")
    def load(self, view: View) -> None:
        if view == "params":
            params = self.backend.parameters()
            self.app.call_from_thread(self._params, params)
        elif view == "doctor":
            checks = self.backend.doctor()
            self.app.call_from_thread(self._doctor, checks)
        elif view == "journal":
            report = self.backend.verify_journal()
            self.app.call_from_thread(self._journal, report)
        elif view == "trust":
            lines = self.backend.trust()
            self.app.call_from_thread(
                self._say, [pick(fr, en) for fr, en in lines] or [t("tech.trust.none")]
            )

    def _say(self, lines: list[str]) -> None:
        self.query_one("#tech-content", Static).update("\n".join(lines))

    def _params(self, profiles: list[ProfileParams]) -> None:
        lines: list[str] = []
        english = language() == "en"
        for p in profiles:
            lines.append(t("tech.params.profile", profile=p.profile))
            for finding in p.findings:
                key = "tech.hygiene.refuse" if finding.level == "refuse" else "tech.hygiene.warn"
                lines.append("  " + t(key, words=pick(finding.fr, finding.en)))
            for line in p.lines:
                label = line.label_en if english else line.label_fr
                lines.append(f"  {label} : {line.shown}")
            lines.append("")
        self._say([*(lines or [t("tech.params.none")]), t("tech.params.edit")])

    def _doctor(self, checks: list[DoctorLine]) -> None:
        self._say([f"{t('tech.doctor.' + c.status):<10} {c.name:<22} {c.message}" for c in checks])

    def _journal(self, report: JournalCheck) -> None:
        first = (
            t("tech.journal.ok", count=report.count)
            if report.ok
            else t("tech.journal.broken", words=report.fr)
        )
        self._say([first, t("tech.journal.head", hash=report.head_hash)])

    def _lots(self) -> None:
        self._say([t("tech.lots.help")])
        table: LazyTable[LotRecord] = self.query_one("#tech-lots", LazyTable)
        table.show(self.backend.lot_rows)
        table.focus()

    def _chosen(self) -> int | None:
        table = self.query_one("#tech-lots", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return None if key is None else int(key)

    def action_cancel_lot(self) -> None:
        lot_id = self._chosen()
        if lot_id is not None:
            self._confirm_then(lot_id, "cancel")

    def action_resend_lot(self) -> None:
        lot_id = self._chosen()
        if lot_id is not None:
            self._confirm_then(lot_id, "resend")

    def _confirm_then(self, lot_id: int, what: Literal["cancel", "resend"]) -> None:
        key = "tech.confirm_cancel" if what == "cancel" else "tech.confirm_resend"

        def answered(yes: bool | None) -> None:
            if yes:
                self.apply(lot_id, what)

        self.app.push_screen(ConfirmDialog(t(key, id=lot_id)), answered)

    @work(thread=True, exclusive=True, exit_on_error=False, group="tech-apply")
    def apply(self, lot_id: int, what: Literal["cancel", "resend"]) -> None:
        try:
            if what == "cancel":
                self.backend.cancel_lot(lot_id)
                words = t("tech.cancelled", id=lot_id)
            else:
                self.backend.resend_lot(lot_id)
                words = t("tech.resent", id=lot_id)
        except BaliseError as exc:
            words = t("kiosk.error", why=exc.message(language()))
        self.app.call_from_thread(self.notify, words, timeout=4)
        table: LazyTable[LotRecord] = self.query_one("#tech-lots", LazyTable)
        self.app.call_from_thread(table.reload)

    # -- the provisioning window ---------------------------------------------------------

    def action_open_window(self) -> None:
        """Show the window; when it is not open yet, open it after a confirmation."""
        self._show_view("window")
        self.window_status(offer=True)

    @work(thread=True, exclusive=True, exit_on_error=False, group="tech-window")
    def window_status(self, offer: bool = False) -> None:
        status = self.backend.provisioning_window()
        self.app.call_from_thread(self._window, status, offer)

    def _window_tick(self) -> None:
        if self.view == "window" and self.is_current:
            self.window_status()

    def _window(self, status: WindowStatus, offer: bool = False) -> None:
        if self.view != "window":
            return
        lines = [self._window_words(status), ""]
        if status.phase == "open":
            address = status.addresses[0] if status.addresses else "?"
            lines += [
                t("tech.window.address", addresses=", ".join(status.addresses) or "?",
                  port=status.port),
                t("tech.window.fingerprint", fingerprint=status.fingerprint),
                "",
                t("tech.window.check", port=status.port, address=address),
                "",
            ]  # fmt: skip
        lines.append(t("tech.window.help"))
        self._say(lines)
        if offer and status.phase not in ("open", "opening"):

            def answered(yes: bool | None) -> None:
                if yes:
                    self.window_request("open")

            self.app.push_screen(ConfirmDialog(t("tech.window.confirm")), answered)

    @staticmethod
    def _window_words(status: WindowStatus) -> str:
        if status.phase == "open":
            minutes, seconds = divmod(status.seconds_left, 60)
            return t("tech.window.open", left=f"{minutes:02d}:{seconds:02d}")
        if status.phase == "error":
            if status.error in KNOWN_WINDOW_ERRORS:
                why = t("tech.window.why." + status.error)
            else:
                why = t("tech.window.why.other", code=status.error)
            return t("tech.window.error", why=why)
        if status.phase == "no-answer":
            return t("tech.window.no_answer")
        if status.phase in ("opening", "closing"):
            return t("tech.window." + status.phase)
        if status.reason == "deadline":
            return t("tech.window.closed.deadline")
        return t("tech.window.closed")

    def action_close_window(self) -> None:
        self.window_request("close")

    @work(thread=True, exclusive=True, exit_on_error=False, group="tech-window-request")
    def window_request(self, what: Literal["open", "close"]) -> None:
        try:
            if what == "open":
                self.backend.open_provisioning_window()
                words = t("tech.window.requested")
            else:
                self.backend.close_provisioning_window()
                words = t("tech.window.close_requested")
        except BaliseError as exc:
            words = t("kiosk.error", why=exc.message(language()))
        self.app.call_from_thread(self.notify, words, timeout=4)
        status = self.backend.provisioning_window()
        self.app.call_from_thread(self._window, status)

    def action_leave(self) -> None:
        self.app.run_worker(self.kiosk.leave_technician(), group="mode")


__all__ = ["LotState", "TechnicianScreen"]
