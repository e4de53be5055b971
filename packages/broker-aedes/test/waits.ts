/** Waits for `done` (polled every 20 ms) or `timeoutMs`, whichever comes first; the caller then checks. */
export const until = async (done: () => boolean, timeoutMs = 10_000): Promise<void> => {
  const t0 = Date.now()
  while (!done() && Date.now() - t0 < timeoutMs) await new Promise((r) => setTimeout(r, 20))
}

/** First occurrences, in arrival order. */
export const firsts = <A>(got: ReadonlyArray<A>): Array<A> => {
  const seen = new Set<A>()
  const out: Array<A> = []
  for (const n of got) if (!seen.has(n)) (seen.add(n), out.push(n))
  return out
}

/** `p`, or a rejection naming `what` if it is not done within `ms` (a hang reported, not a speed measured). */
export const within = <A>(p: Promise<A>, ms: number, what: string): Promise<A> =>
  Promise.race([p, new Promise<A>((_, reject) => setTimeout(() => reject(new Error(`${what}: not done in ${ms} ms`)), ms))])
