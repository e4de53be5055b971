import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Schema } from "effect"
import type { App } from "@baton/core"
import { Sqlite } from "@baton/store"
import * as EventVersions from "../src/EventVersions.ts"

const types = { string: Schema.String, number: Schema.Finite, boolean: Schema.Boolean, list: Schema.Array(Schema.String) } as const
type Kind = keyof typeof types
const kind = fc.constantFrom<Kind>("string", "number", "boolean", "list")
/** Fields of a struct: a name, a type, and whether it is optional. */
const fields = fc.dictionary(fc.stringMatching(/^[a-z]{1,6}$/), fc.record({ kind, optional: fc.boolean() }), { maxKeys: 5 })
type Fields = typeof fields extends fc.Arbitrary<infer A> ? A : never
const doc = (f: Fields) =>
  Schema.toJsonSchemaDocument(Schema.Struct(Object.fromEntries(Object.entries(f).map(([k, { kind, optional }]) => [k, optional ? Schema.optionalKey(types[kind]) : types[kind]]))))

const shuffle = (value: unknown, seed: number): unknown =>
  Array.isArray(value)
    ? value.map((v) => shuffle(v, seed))
    : typeof value === "object" && value !== null
      ? Object.fromEntries(Object.entries(value).sort((a, b) => ((a[0].length * seed) % 7) - ((b[0].length * seed) % 7)).map(([k, v]) => [k, shuffle(v, seed)]))
      : value

describe("event schema fingerprints", () => {
  it("for all schemas: the same fingerprint whatever the order of their keys; another for another schema", () => {
    fc.assert(
      fc.property(fields, fields, fc.integer({ min: 1, max: 100 }), (a, b, seed) => {
        expect(EventVersions.fingerprint(shuffle(doc(a), seed))).toBe(EventVersions.fingerprint(doc(a)))
        expect(EventVersions.fingerprint(doc(a)) === EventVersions.fingerprint(doc(b))).toBe(JSON.stringify(doc(a)) === JSON.stringify(doc(b)))
      }),
      { numRuns: 200 }
    )
  })

  it("for all schemas: adding or removing optional fields is compatible; a field's type, a required field, or optional made required is not", () => {
    fc.assert(
      fc.property(fields, fields, (base, extra) => {
        const added = Object.fromEntries(Object.entries(extra).filter(([k]) => !(k in base)).map(([k, f]) => [k, { ...f, optional: true }]))
        expect(EventVersions.additive(doc(base), doc({ ...base, ...added }))).toBe(true)
        expect(EventVersions.additive(doc({ ...base, ...added }), doc(base))).toBe(true)
        const [name, field] = Object.entries(base)[0] ?? []
        if (name === undefined || field === undefined) return
        const other: Kind = field.kind === "string" ? "number" : "string"
        expect(EventVersions.additive(doc(base), doc({ ...base, [name]: { ...field, kind: other } }))).toBe(false)
        if (field.optional) expect(EventVersions.additive(doc(base), doc({ ...base, [name]: { ...field, optional: false } }))).toBe(false)
        const fresh = Object.keys(extra).find((k) => !(k in base))
        if (fresh !== undefined) expect(EventVersions.additive(doc(base), doc({ ...base, [fresh]: { kind: "string", optional: false } }))).toBe(false)
      }),
      { numRuns: 200 }
    )
  })
})

describe("EventVersions.check", () => {
  const app = (name: string, events: ReadonlyArray<{ type: string; version: number; schema?: unknown }>): App => ({ name, initiating: [], processors: [], events })
  const v = (version: number, f: Fields = { a: { kind: "string", optional: false } }) => ({ type: "measured", version, schema: doc(f) })

  it("two apps of one runtime reading one event at different versions: the older fails, naming both", async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    try {
      await expect(EventVersions.check(store, [app("writer", [v(2)]), app("reader", [v(1)])])).rejects.toThrow(
        /^app 'reader' declares event 'measured' at version 1, but version 2 is recorded \(app 'writer', /
      )
    } finally {
      await store.close()
    }
  })

  it("a deployment records what it declares; the same declarations start again; an app's own narrower schema is its own", async () => {
    const store = await Sqlite.open({ path: ":memory:" })
    try {
      const apps = [app("writer", [v(1, { a: { kind: "string", optional: false }, b: { kind: "number", optional: false } })]), app("reader", [v(1)])]
      await EventVersions.check(store, apps)
      await EventVersions.check(store, apps)
      const rows = await store.run(store.query("SELECT app, type, version FROM event_versions ORDER BY app").all())
      expect(rows).toEqual([{ app: "reader", type: "measured", version: 1 }, { app: "writer", type: "measured", version: 1 }])
      await expect(EventVersions.check(store, [app("reader", [v(1, { a: { kind: "number", optional: false } })])])).rejects.toThrow(EventVersions.EventVersionError)
      await EventVersions.check(store, [app("reader", [v(2)])])
      expect(await store.run(store.query("SELECT version FROM event_versions WHERE app = 'reader' ORDER BY version").all())).toEqual([{ version: 1 }, { version: 2 }])
    } finally {
      await store.close()
    }
  })
})
