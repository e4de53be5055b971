/** What the SQLite row tests generate and compare (`SqliteRows.test.ts`, and `sqliteRowsNoCodegen.ts` in a process of its own). */
import fc from "fast-check"

export const names = fc.constantFrom("a", "b", "seq", "__proto__", "constructor", "toString", "hasOwnProperty", "0", "1", "a b", 'q"uote', "")
export const value = fc.oneof(fc.integer(), fc.double({ noNaN: true }), fc.string(), fc.constant(null), fc.uint8Array({ maxLength: 8 }))
export const quoted = (name: string) => `"${name.replaceAll('"', '""')}"`
/** What a row shows of itself: its own keys in order, their values, and which of the usual inherited names it answers. */
export const seen = (row: Record<string, unknown>) => ({
  keys: Object.keys(row),
  values: Object.keys(row).map((k) => row[k]),
  inherited: ["toString", "constructor", "hasOwnProperty", "__proto__", "valueOf"].filter((k) => k in row && !Object.hasOwn(row, k)),
  json: JSON.stringify(row, (_, v: unknown) => (v instanceof Uint8Array ? [...v] : v))
})
