/**
 * Event versions across deployments. Each app's declared events (type, version, and the JSON Schema
 * of their data) are recorded in the store at start, and checked against what earlier deployments
 * recorded: events already in the store (outbox, inboxes, parked, in workflows) follow those schemas.
 *
 * - A version lower than the highest recorded for the type fails: events of the newer version may
 *   be stored, and the older schema cannot read them (an app's own rollback, or an app that reads
 *   an event another app already announces at a newer version).
 * - The same version with another schema fails, unless the change only adds or removes optional
 *   top-level fields (data of either schema decodes with the other): an incompatible change needs
 *   the next version and an upcaster.
 * - A new version (its upcasters are checked by the SDK when the event is declared) is recorded.
 */
import { createHash } from "node:crypto"
import { Effect } from "effect"
import type { App } from "@baton/core"
import type { Store } from "@baton/store"

export const migrations = [
  {
    name: "runtime/001-event-versions",
    sql: `CREATE TABLE event_versions (
      app TEXT NOT NULL,
      type TEXT NOT NULL,
      version INTEGER NOT NULL,
      fingerprint TEXT NOT NULL,
      schema TEXT NOT NULL,
      recorded_at TEXT NOT NULL,
      PRIMARY KEY (app, type, version)
    );
    CREATE INDEX event_versions_type ON event_versions (type, version);`
  }
]

export class EventVersionError extends Error {
  override readonly name = "EventVersionError"
}

/** A stable text for a JSON value (object keys sorted), so equal schemas have equal fingerprints. */
const canonical = (value: unknown): string =>
  Array.isArray(value)
    ? `[${value.map(canonical).join(",")}]`
    : typeof value === "object" && value !== null
      ? `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`).join(",")}}`
      : JSON.stringify(value) ?? "null"

export const fingerprint = (schema: unknown): string => createHash("sha256").update(canonical(schema)).digest("hex").slice(0, 16)

type Json = Readonly<Record<string, unknown>>

/**
 * Whether data of either schema decodes with the other: both objects that differ only by optional
 * top-level properties (an excess property is ignored when decoding).
 */
export const additive = (before: unknown, after: unknown): boolean => {
  const a = before as { readonly schema?: Json; readonly definitions?: unknown } | null
  const b = after as { readonly schema?: Json; readonly definitions?: unknown } | null
  const sa = struct(a?.schema)
  const sb = struct(b?.schema)
  if (sa?.type !== "object" || sb?.type !== "object") return false
  if (canonical(a?.definitions) !== canonical(b?.definitions)) return false
  const { properties: pa = {}, required: ra = [], ...restA } = sa as { properties?: Json; required?: ReadonlyArray<string> }
  const { properties: pb = {}, required: rb = [], ...restB } = sb as { properties?: Json; required?: ReadonlyArray<string> }
  if (canonical(restA) !== canonical(restB) || canonical([...ra].sort()) !== canonical([...rb].sort())) return false
  if ((restA as Json).additionalProperties === false) return false
  return Object.keys(pa).filter((k) => k in pb).every((k) => canonical(pa[k]) === canonical(pb[k]))
}

/** `Schema.Struct({})` has no object form in JSON Schema (`{ not: { type: "null" } }`): an object without properties. */
const struct = (schema: Json | undefined): Json | undefined =>
  schema !== undefined && canonical(schema) === canonical({ not: { type: "null" } }) ? { type: "object", additionalProperties: true } : schema

/** Records the apps' declared events, failing with one readable error on a version or schema conflict. */
export const check = async (store: Store, apps: ReadonlyArray<App>, now: () => Date = () => new Date()): Promise<void> => {
  await store.migrate(migrations)
  const recorded = store.query("SELECT fingerprint, schema FROM event_versions WHERE app = ? AND type = ? AND version = ?")
  const insert = store.query("INSERT INTO event_versions (app, type, version, fingerprint, schema, recorded_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
  const update = store.query("UPDATE event_versions SET fingerprint = ?, schema = ?, recorded_at = ? WHERE app = ? AND type = ? AND version = ?")
  const newest = store.query("SELECT app, version, recorded_at FROM event_versions WHERE type = ? ORDER BY version DESC, recorded_at LIMIT 1")
  const declared = apps.flatMap((app) => (app.events ?? []).map((e) => ({ app: app.name, ...e })))
  await store.transaction(
    Effect.gen(function* () {
      for (const e of declared) {
        const schema = canonical(e.schema ?? null)
        const print = fingerprint(e.schema ?? null)
        const at = now().toISOString()
        yield* insert.run(e.app, e.type, e.version, print, schema, at)
        const row = yield* recorded.get(e.app, e.type, e.version)
        if (row === undefined || String(row.fingerprint) === print) continue
        if (e.schema === undefined || !additive(JSON.parse(String(row.schema)), e.schema))
          return yield* Effect.fail(
            new EventVersionError(
              `app '${e.app}': event '${e.type}' changed its schema at version ${e.version}: an incompatible change needs version ${e.version + 1} and an upcaster from ${e.version} (Baton.event("${e.type}", schema, { version: ${e.version + 1}, upcast: { ${e.version}: (data) => ... } })); adding or removing optional fields is the only change a version allows`
            )
          )
        yield* update.run(print, schema, at, e.app, e.type, e.version)
      }
      for (const e of declared) {
        const top = yield* newest.get(e.type)
        if (top !== undefined && Number(top.version) > e.version)
          return yield* Effect.fail(
            new EventVersionError(
              `app '${e.app}' declares event '${e.type}' at version ${e.version}, but version ${Number(top.version)} is recorded (app '${String(top.app)}', ${String(top.recorded_at)}): events of version ${Number(top.version)} may be stored, which version ${e.version} cannot read; declare version ${Number(top.version)} or later with its upcasters`
            )
          )
      }
    })
  )
}
