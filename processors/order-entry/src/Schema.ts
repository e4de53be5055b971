/** Tables of the order-entry app; each processor writes only its own. */
import type { Migration } from "@baton/store"
import { catalogue } from "./Contract.ts"

export const migrations: ReadonlyArray<Migration> = [
  {
    name: "order-entry/001-tables",
    sql: `
      CREATE TABLE catalogue (sku TEXT PRIMARY KEY, title TEXT NOT NULL);
      CREATE TABLE orders (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        correlation_id TEXT NOT NULL UNIQUE,
        customer_id TEXT NOT NULL,
        email TEXT NOT NULL,
        total REAL NOT NULL,
        payment_token TEXT NOT NULL,
        created_at TEXT NOT NULL
      );
      CREATE TABLE order_items (order_id TEXT NOT NULL REFERENCES orders(id), line INTEGER NOT NULL, sku TEXT NOT NULL, qty INTEGER NOT NULL, price REAL NOT NULL, PRIMARY KEY (order_id, line));
      CREATE TABLE payment_vault (token TEXT PRIMARY KEY, card TEXT NOT NULL);
      CREATE TABLE payments (order_id TEXT PRIMARY KEY, approved INTEGER NOT NULL, amount REAL NOT NULL, authorization TEXT, reason TEXT, at TEXT NOT NULL);
      CREATE TABLE stock (sku TEXT PRIMARY KEY, on_hand INTEGER NOT NULL, backordered INTEGER NOT NULL DEFAULT 0);
      CREATE TABLE stock_allocations (order_id TEXT PRIMARY KEY, lines TEXT NOT NULL);
      CREATE TABLE warehouse_stock (sku TEXT PRIMARY KEY, level INTEGER NOT NULL, threshold INTEGER NOT NULL, reorder_qty INTEGER NOT NULL, pending_reorder INTEGER NOT NULL DEFAULT 0);
      CREATE TABLE warehouse_seen (order_id TEXT PRIMARY KEY);
      CREATE TABLE reorders (id INTEGER PRIMARY KEY AUTOINCREMENT, sku TEXT NOT NULL, qty INTEGER NOT NULL, order_id TEXT NOT NULL, at TEXT NOT NULL);
      CREATE TABLE fulfillments (order_id TEXT PRIMARY KEY, at TEXT NOT NULL);
      CREATE TABLE shipments (order_id TEXT PRIMARY KEY, method TEXT NOT NULL, tracking_id TEXT NOT NULL, at TEXT NOT NULL);
      CREATE TABLE emails (cause_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, recipient TEXT NOT NULL, template TEXT NOT NULL, message_id TEXT NOT NULL, message TEXT, at TEXT NOT NULL);
      ${catalogue.map((c) => `INSERT INTO catalogue VALUES ('${c.sku}', '${c.title}'); INSERT INTO stock (sku, on_hand) VALUES ('${c.sku}', ${c.units}); INSERT INTO warehouse_stock (sku, level, threshold, reorder_qty) VALUES ('${c.sku}', ${c.units}, 100, 500);`).join("\n")}
    `
  }
]
