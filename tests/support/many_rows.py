"""Years of rows in seconds: copies of one row the real write path made, varied where the schema
wants unique values (lot numbers and dates, hashes, ids). For listing tests, where what matters is
how many rows there are, not how each one came."""

from __future__ import annotations

from balise.app.context import Context

_COUNT = "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?) "


def many_lots(ctx: Context, template_id: int, n: int) -> None:
    """``n`` copies of lot ``template_id``, each with its own number, date and SHA-256, and the
    template's bytes (lot_blobs)."""
    with ctx.store.write():
        first = int(ctx.store.conn.execute("SELECT max(id) FROM lots").fetchone()[0]) + 1
        ctx.store.conn.execute(
            _COUNT + "INSERT INTO lots(profile, emitter, lot_number, lot_date, addressee, "
            "organism, flow, application, invoices, total, sha256, size, state, "
            "received, source, state_changed, reasons) "
            "SELECT profile, emitter, printf('%03d', i % 1000), "
            "substr(strftime('%Y%m%d', '2020-01-01', '+' || (i / 1000) || ' days'), 3), "
            "addressee, "
            "organism, flow, application, invoices, total + i, lower(hex(randomblob(32))), size, "
            "state, received, source, state_changed, reasons "
            "FROM lots, k WHERE lots.id = ?",
            (n, template_id),
        )
        ctx.store.conn.execute(
            "INSERT INTO lot_blobs(lot_id, kind, data) SELECT l.id, b.kind, b.data "
            "FROM lots l JOIN lot_blobs b ON b.lot_id = ? WHERE l.id >= ? ORDER BY l.id",
            (template_id, first),
        )


def many_payments(ctx: Context, template_id: int, n: int) -> None:
    """``n`` copies of payment ``template_id`` (same return, consecutive invoice numbers)."""
    with ctx.store.write():
        ctx.store.conn.execute(
            _COUNT + "INSERT INTO payments(return_id, profile, emitter, lot_number, lot_date, "
            "lot_id, invoice_number, invoice_type, amo_asked, amo_state, amo_paid, amc_asked, "
            "amc_state, amc_paid, reasons, accounting_date, transfer_reference) "
            "SELECT return_id, profile, emitter, lot_number, lot_date, lot_id, "
            "invoice_number + i, invoice_type, amo_asked, amo_state, amo_paid, amc_asked, "
            "amc_state, amc_paid, reasons, accounting_date, transfer_reference "
            "FROM payments, k WHERE payments.id = ?",
            (n, template_id),
        )


def many_alerts(ctx: Context, template_id: int, n: int) -> None:
    """``n`` copies of alert ``template_id``, not acknowledged."""
    with ctx.store.write():
        ctx.store.conn.execute(
            _COUNT + "INSERT INTO alerts(kind, subject, fr, en, details, created) "
            "SELECT kind, subject || ':' || i, fr, en, details, created "
            "FROM alerts, k WHERE alerts.id = ?",
            (n, template_id),
        )
