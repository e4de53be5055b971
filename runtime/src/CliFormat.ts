/** What `pnpm baton` prints for people: aligned tables and a causation tree. Pure functions. */

/**
 * A cell: text on one line with single spaces between words (so two spaces always part columns),
 * `-` for nothing (blank included), cut at `max` characters.
 */
export const cell = (value: unknown, max = 60): string => {
  const raw = value === undefined || value === null ? "" : typeof value === "string" ? value : typeof value === "object" ? JSON.stringify(value) : String(value)
  const flat = raw.replace(/\s+/g, " ").trim()
  if (flat === "") return "-"
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat
}

/** Columns padded to their widest cell, two spaces apart, a header in capitals; `(none)` when empty. */
export const table = (headers: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<unknown>>): string => {
  if (rows.length === 0) return "(none)\n"
  const cells = [headers.map((h) => h.toUpperCase()), ...rows.map((r) => headers.map((_, i) => cell(r[i])))]
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)))
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd()).join("\n") + "\n"
}

/** `name  value` lines, names padded. */
export const fields = (pairs: ReadonlyArray<readonly [string, unknown]>): string => {
  const width = Math.max(...pairs.map(([k]) => k.length))
  return pairs.map(([k, v]) => `${k.padEnd(width)}  ${cell(v, 200)}`).join("\n") + "\n"
}

export interface FlowEvent {
  readonly id: string
  readonly type: string
  readonly causationId?: string | null | undefined
  readonly processor?: string | null | undefined
  readonly status?: string | null | undefined
  /** What each processor that received the event made of it, when the answer lists them. */
  readonly deliveries?: ReadonlyArray<{ readonly processor: string; readonly status: string }> | undefined
}

/** `by <processor>, <status>`, or one `<processor> <status>` per delivery. */
const notesOf = (e: FlowEvent): ReadonlyArray<string> => [
  ...(e.processor == null ? [] : [`by ${e.processor}`]),
  ...(e.status == null ? [] : [e.status]),
  ...(e.deliveries ?? []).map((d) => `${d.processor} ${d.status}`)
]

/**
 * The events of a flow as a tree by causation: each under the event that caused it, roots (no
 * cause, or a cause outside the list, or itself) first; siblings in the order given.
 */
export const causationTree = (events: ReadonlyArray<FlowEvent>): string => {
  const ids = new Set(events.map((e) => e.id))
  const isRoot = (e: FlowEvent) => e.causationId == null || e.causationId === e.id || !ids.has(e.causationId)
  const children = new Map<string, Array<FlowEvent>>()
  for (const e of events) if (!isRoot(e)) children.set(e.causationId!, [...(children.get(e.causationId!) ?? []), e])
  const lines: Array<string> = []
  const seen = new Set<string>()
  const walk = (e: FlowEvent, depth: number) => {
    if (seen.has(e.id)) return
    seen.add(e.id)
    const notes = notesOf(e)
    lines.push(`${"  ".repeat(depth)}${depth === 0 ? "" : "└ "}${e.type} ${e.id}${notes.length === 0 ? "" : ` (${notes.join(", ")})`}`)
    for (const c of children.get(e.id) ?? []) walk(c, depth + 1)
  }
  for (const e of events) if (isRoot(e)) walk(e, 0)
  // A cycle of causes has no root: shown flat rather than lost.
  for (const e of events) walk(e, 0)
  return lines.length === 0 ? "(no events)\n" : lines.join("\n") + "\n"
}
