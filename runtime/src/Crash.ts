/**
 * Kill points for the crash tests: `BATON_CRASH_AT=<point>:<n>` makes the process SIGKILL itself
 * the n-th time it reaches `<point>` (n defaults to 1); `<point>@<processor>` counts only that
 * processor's passes (`handler@workflow-processor`). Unset, every call is a no-op.
 */
export const points = [
  "ingress-before-commit", // initiating events written to the log, not committed: no PUBACK may have left
  "ingress-committed", // initiating event in the durable log, before the broker's PUBACK
  "handler", // inside a processor handler, before its transaction commits
  "received-committed", // message in the processor's inbox, before it is acknowledged to the broker (external broker)
  "processed-committed", // effects, inbox and outbox committed, before the relay publishes
  "outbox-published", // relay's publish confirmed, before the entry is marked sent
  "handover-committed" // BATON_FRONT=log: front log entries forwarded and main's mark committed, before the ingress's cursor moves on
] as const

/** Every point is reached by the crash test in durability.crash.int.test.ts at least once per run. */
export type Point = (typeof points)[number]

const spec = process.env.BATON_CRASH_AT
const [target, times] = spec === undefined || spec === "" ? [undefined, 0] : [spec.split(":")[0], Number(spec.split(":")[1] ?? 1)]
let hits = 0

/**
 * Whether a pass at `name` (by `processor`) counts toward `target`. Unset, false before anything
 * is built: the `<point>@<processor>` text is made only when a target is set (it was made on every
 * pass, several a message).
 */
export const aims = (target: string | undefined, name: Point, processor?: string): boolean =>
  target !== undefined && (name === target || `${name}@${processor}` === target)

export const point = (name: Point, processor?: string): void => {
  if (!aims(target, name, processor)) return
  hits++
  if (hits === times) process.kill(process.pid, "SIGKILL")
}
