/**
 * Splits each accept's time (`tail.ts accept` with `TAIL_TIMELINE=1`) into its steps, from the
 * runtime's marks (`BATON_TIMELINE`, `timeline` in @baton/store: a code, the monotonic clock in
 * microseconds, a number, flat) and the client's own times of each accept in the same clock:
 *
 * - late: the sender behind its schedule (from the due time to the send);
 * - to loop: the PUBLISH waiting for the runtime's event loop (from its send to the ingress's
 *   `receive`, "r": the socket read, its parse and the broker's checks);
 * - to flush: `receive` to its batch's flush ("f", a microtask later);
 * - to conn: the flush to its transaction's first step ("s": the connection taken);
 * - tx: its transaction, to the commit's return ("c");
 * - to end: the promises from the commit to the end of `receive` ("a"; the PUBACK is written a few
 *   microtasks later, in the same turn);
 * - back: the PUBACK to the client, read by its loop.
 *
 * With, for the slowest 1%, what the loop ran between the send and the `receive`: the group commits
 * ("g" at a group's start with its size, "G" at its end) and other appends' transactions.
 */
type Span = readonly [start: number, end: number, size: number]

const percentile = (xs: ReadonlyArray<number>, p: number) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
}
const ms = (us: number) => (us / 1000).toFixed(2)

/** `client`: per accept [due, sent, PUBACK read], µs of the monotonic clock. */
export const split = (marks: ReadonlyArray<string | number>, client: ReadonlyArray<readonly [number, number, number]>): string => {
  const of = new Map<string, Array<readonly [number, number]>>()
  for (let i = 0; i + 2 < marks.length; i += 3) {
    const code = marks[i] as string
    let list = of.get(code)
    if (list === undefined) of.set(code, (list = []))
    list.push([marks[i + 1] as number, marks[i + 2] as number])
  }
  const get = (code: string) => of.get(code) ?? []
  const n = client.length
  const receives = get("r")
  const ends = get("a")
  const first = receives.length - n
  if (first < 0 || ends.length < n) return `timeline: ${receives.length} receives marked for ${n} accepts`
  // Each flush covers the next `size` receives in order; its first statement and its commit follow in the same order.
  const flushes = get("f")
  const starts = get("s")
  const commits = get("c")
  const batchOf: Array<number> = []
  flushes.forEach(([, size], b) => {
    for (let k = 0; k < size; k++) batchOf.push(b)
  })
  const steps = ["late", "to loop", "to flush", "to conn", "tx", "to end", "back", "total"] as const
  const rows = client.map(([due, sent, done], i) => {
    const k = first + i
    const b = batchOf[k]!
    const r = receives[k]![0]
    const f = flushes[b]![0]
    const s = starts[b]?.[0] ?? f
    const c = commits[b]?.[0] ?? s
    const a = ends[ends.length - n + i]![0]
    return { sent, r, size: flushes[b]![1], values: [sent - due, r - sent, f - r, s - f, c - s, a - c, done - a, done - Math.min(due, sent)] }
  })
  const groups: Array<Span> = []
  const ends2 = get("G")
  get("g").forEach(([at, size], i) => groups.push([at, ends2[i]?.[0] ?? at, size]))
  const appends: Array<Span> = starts.map(([at, size], i) => [at, commits[i]?.[0] ?? at, size])
  const slow = [...rows].sort((x, y) => y.values[7]! - x.values[7]!).slice(0, Math.max(1, Math.ceil(n / 100)))
  const mean = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0) / xs.length
  const within = (spans: ReadonlyArray<Span>, from: number, to: number) => spans.filter(([s, e]) => e > from && s < to)
  const lines = [
    `accept split (ms; ${n} accepts, appends a batch: mean ${mean(rows.map((r) => r.size)).toFixed(2)}):`,
    `  ${"".padEnd(6)} ${steps.map((s) => s.padStart(8)).join(" ")}`,
    ...[50, 90, 99].map((p) => `  p${String(p).padEnd(5)} ${steps.map((_, j) => ms(percentile(rows.map((r) => r.values[j]!), p)).padStart(8)).join(" ")}`),
    `  slow1% ${steps.map((_, j) => ms(mean(slow.map((r) => r.values[j]!))).padStart(8)).join(" ")}  (means of the slowest 1%)`
  ]
  // What the loop ran while the slowest waited for it.
  const inGroups = slow.map((r) => within(groups, r.sent, r.r))
  const inAppends = slow.map((r) => within(appends, r.sent, r.r))
  const busy = (spans: ReadonlyArray<Span>, from: number, to: number) => spans.reduce((t, [s, e]) => t + Math.max(0, Math.min(e, to) - Math.max(s, from)), 0)
  lines.push(
    `  the slowest 1% while waiting for the loop: group commits ${mean(inGroups.map((g) => g.length)).toFixed(1)} (their time in the wait ${ms(mean(slow.map((r, i) => busy(inGroups[i]!, r.sent, r.r))))} ms, largest ${Math.max(0, ...inGroups.flat().map((g) => g[2]))} items, longest ${ms(Math.max(0, ...inGroups.flat().map((g) => g[1] - g[0])))} ms); appends ${mean(inAppends.map((g) => g.length)).toFixed(1)} (${ms(mean(slow.map((r, i) => busy(inAppends[i]!, r.sent, r.r))))} ms)`
  )
  const paced = groups.filter(([s]) => s >= rows[0]!.sent)
  const durations = paced.map(([s, e]) => e - s)
  lines.push(`  group commits while paced: ${paced.length}, size p50 ${percentile(paced.map((g) => g[2]), 50)} p99 ${percentile(paced.map((g) => g[2]), 99)}, duration p50 ${ms(percentile(durations, 50))} p99 ${ms(percentile(durations, 99))} max ${ms(Math.max(0, ...durations))} ms`)
  // The long ones, where they fell in the paced window.
  const long = paced.filter(([s, e]) => e - s > 5000)
  if (long.length > 0) lines.push(`  group commits over 5 ms (at ms of the window: items, ms): ${long.map(([s, e, size]) => `${ms(s - rows[0]!.sent)}: ${size}, ${ms(e - s)}`).join("; ")}`)
  // What the long ones are made of (marks "i" at each item's start, "t" at each chained turn, "C"
  // at the COMMIT's start, "n" the group's statements, after its "G").
  const at = (code: string) => get(code).map(([t]) => t)
  const between = (ts: ReadonlyArray<number>, from: number, to: number) => ts.filter((t) => t >= from && t <= to)
  const itemStarts = at("i")
  const itemEndMarks = at("I")
  const receiveMarks = at("r")
  const beginStarts = at("B")
  const beginEnds = at("b")
  const turns = at("t")
  const commitStarts = at("C")
  const statements = get("n")
  const made = groups.map(([s, e, size], g) => {
    const starts = between(itemStarts, s, e)
    const commit = between(commitStarts, s, e).at(-1) ?? e
    const bounds = [...starts, commit]
    const itemEnds = between(itemEndMarks, s, e)
    // Each item's time, its chained turns, and the time from its end to the next item's start (or the COMMIT).
    const items = starts.map((t, k) => ({ ms: (itemEnds[k] ?? bounds[k + 1]!) - t, turns: between(turns, t, bounds[k + 1]!).length, after: bounds[k + 1]! - (itemEnds[k] ?? bounds[k + 1]!) }))
    const begun = between(beginStarts, s, e)[0] ?? s
    const beginEnd = between(beginEnds, s, e)[0] ?? begun
    return { s, e, size, statements: statements[g]?.[1] ?? 0, commit: e - commit, items, inside: between(receiveMarks, s, e).length, toBegin: begun - s, begin: beginEnd - begun, toFirst: (starts[0] ?? beginEnd) - beginEnd }
  })
  const pacedMade = made.filter(({ s }) => s >= rows[0]!.sent)
  const turnsPerItem = pacedMade.flatMap((g) => g.items.map((i) => i.turns))
  lines.push(`  chained turns an item while paced: p50 ${percentile(turnsPerItem, 50)} p99 ${percentile(turnsPerItem, 99)} max ${Math.max(0, ...turnsPerItem)}; statements a group p50 ${percentile(pacedMade.map((g) => g.statements), 50)} p99 ${percentile(pacedMade.map((g) => g.statements), 99)}; COMMIT p99 ${ms(percentile(pacedMade.map((g) => g.commit), 99))} max ${ms(Math.max(0, ...pacedMade.map((g) => g.commit)))} ms`)
  for (const g of pacedMade.filter(({ s, e }) => e - s > 3000))
    lines.push(
      `    group at ${ms(g.s - rows[0]!.sent)}: ${ms(g.e - g.s)} ms, ${g.size} items, ${g.statements} statements, to the BEGIN ${ms(g.toBegin)} ms, BEGIN ${ms(g.begin)} ms, to the first item ${ms(g.toFirst)} ms, COMMIT ${ms(g.commit)} ms, publishes received inside it ${g.inside}; items (ms/turns/ms after it): ${g.items.map((i) => `${ms(i.ms)}/${i.turns}/${ms(i.after)}`).join(" ")}`
    )
  const longAppends = appends.filter(([s, e]) => s >= rows[0]!.sent && e - s > 5000)
  if (longAppends.length > 0) lines.push(`  appends over 5 ms (at ms of the window: appends, ms): ${longAppends.map(([s, e, size]) => `${ms(s - rows[0]!.sent)}: ${size}, ${ms(e - s)}`).join("; ")}`)
  return lines.join("\n")
}
