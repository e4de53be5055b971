/** Tables of the order-entry app; each processor writes only its own. */
import { ddl, type Migration } from "@baton/sdk"
import { catalogue } from "./Contract.ts"

export const migrations: ReadonlyArray<Migration> = [
  {
    name: "order-entry/001-tables",
    sql: ddl(
      (t) => `
      CREATE TABLE catalogue (sku TEXT PRIMARY KEY, title TEXT NOT NULL${t.rowid});
      CREATE TABLE orders (
        seq ${t.serialKey},
        id TEXT NOT NULL UNIQUE,
        correlation_id TEXT NOT NULL UNIQUE,
        customer_id TEXT NOT NULL,
        email TEXT NOT NULL,
        total ${t.real} NOT NULL,
        payment_token TEXT NOT NULL,
        created_at TEXT NOT NULL${t.rowid}
      );
      CREATE TABLE order_items (order_id TEXT NOT NULL REFERENCES orders(id), line ${t.int} NOT NULL, sku TEXT NOT NULL, qty ${t.int} NOT NULL, price ${t.real} NOT NULL, PRIMARY KEY (order_id, line)${t.rowid});
      CREATE TABLE payment_vault (token TEXT PRIMARY KEY, card TEXT NOT NULL${t.rowid});
      CREATE TABLE payments (order_id TEXT PRIMARY KEY, approved ${t.int} NOT NULL, amount ${t.real} NOT NULL, "authorization" TEXT, reason TEXT, at TEXT NOT NULL${t.rowid});
      CREATE TABLE stock (sku TEXT PRIMARY KEY, on_hand ${t.int} NOT NULL, backordered ${t.int} NOT NULL DEFAULT 0${t.rowid});
      CREATE TABLE stock_allocations (order_id TEXT PRIMARY KEY, lines TEXT NOT NULL${t.rowid});
      CREATE TABLE warehouse_stock (sku TEXT PRIMARY KEY, level ${t.int} NOT NULL, threshold ${t.int} NOT NULL, reorder_qty ${t.int} NOT NULL, pending_reorder ${t.int} NOT NULL DEFAULT 0${t.rowid});
      CREATE TABLE warehouse_seen (order_id TEXT PRIMARY KEY${t.rowid});
      CREATE TABLE reorders (id ${t.serialKey}, sku TEXT NOT NULL, qty ${t.int} NOT NULL, order_id TEXT NOT NULL, at TEXT NOT NULL${t.rowid});
      CREATE TABLE fulfillments (order_id TEXT PRIMARY KEY, at TEXT NOT NULL${t.rowid});
      CREATE TABLE shipments (order_id TEXT PRIMARY KEY, method TEXT NOT NULL, tracking_id TEXT NOT NULL, at TEXT NOT NULL${t.rowid});
      CREATE TABLE emails (cause_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, recipient TEXT NOT NULL, template TEXT NOT NULL, message_id TEXT NOT NULL, message TEXT, at TEXT NOT NULL${t.rowid});
      ${catalogue.map((c) => `INSERT INTO catalogue (sku, title) VALUES ('${c.sku}', '${c.title}'); INSERT INTO stock (sku, on_hand) VALUES ('${c.sku}', ${c.units}); INSERT INTO warehouse_stock (sku, level, threshold, reorder_qty) VALUES ('${c.sku}', ${c.units}, 100, 500);`).join("\n")}
    `
    )
  },
  {
    // The compensating step's record, keyed by order: a release happens once, and an allocation
    // that arrives after its order's release takes nothing (the tombstone).
    name: "order-entry/002-stock-releases",
    sql: ddl((t) => `CREATE TABLE stock_releases (order_id TEXT PRIMARY KEY, lines TEXT NOT NULL, at TEXT NOT NULL${t.rowid});`)
  },
  {
    // PostgreSQL: what Payment's insert calls when the order's payment is there already (another
    // instance recorded it meanwhile): a serialization failure, so that its transaction runs again
    // at once and announces the payment recorded. Applied once under the migrations' lock.
    name: "order-entry/003-payment-recorded",
    sql: {
      sqlite: "",
      pg: `CREATE OR REPLACE FUNCTION order_entry_payment_recorded() RETURNS BIGINT LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'the order''s payment was recorded meanwhile' USING ERRCODE = '40001';
      END $$`
    }
  }
]
