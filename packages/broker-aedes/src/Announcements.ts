/**
 * The broker's side of its filter announcements (`EmbeddedBroker` option `filters`), for a mirror
 * of its filters kept elsewhere (Mirror.ts). A filter is announced before the SUBACK of a
 * subscription that needs it (the SUBACK waits for `added`), and dropped once nothing can still
 * need it: no live subscription of it in the broker's matcher, no subscription of it between its
 * announcement and the matcher (the SUBACK waiting, `waiting`), and no persistent session's
 * subscription ever (an offline session gets its messages queued: `lasting`, never dropped). So
 * the mirror, fed in the order of the calls, holds every filter a client holds.
 */
import { Log, Topics } from "@baton/core"

/** A broker's filter announcements (Options `filters`), in the order the broker makes them. */
export interface FilterHooks {
  /**
   * A client subscribes to a filter not announced yet, or announced but not yet for a persistent
   * session (`persistent`: the client's clean is false): called before its SUBACK, which waits for
   * the promise (refused, 0x80, if it rejects). A filter under `reply/` is announced all the same
   * but waits for nobody: a reply always goes out.
   */
  readonly added: (filter: string, persistent: boolean) => Promise<void> | undefined
  /** An announced filter's last live subscription left the broker's matcher; never a persistent session's. */
  readonly dropped: (filter: string) => void
}

/**
 * @param holds whether the broker's matcher holds a live subscription of exactly `filter`.
 */
export const make = (hooks: FilterHooks, holds: (filter: string) => boolean, logger: Log.Logger) => {
  const live = new Set<string>()
  const lasting = new Set<string>()
  const waiting = new Map<string, number>()
  // Each filter's announcement on its way (its `added` not settled yet): a SUBSCRIBE of that filter
  // meanwhile waits for it too, or its SUBACK would come before the mirror holds the filter.
  const announcing = new Map<string, Promise<void>>()
  const dropIfGone = (filter: string) => {
    if (!live.has(filter) || lasting.has(filter) || waiting.has(filter) || holds(filter)) return
    live.delete(filter)
    hooks.dropped(filter)
  }
  return {
    /** A persistent session's filter read from the sessions store at start: known already. */
    stored: (filter: string) => void lasting.add(filter),
    /**
     * A SUBSCRIBE's filter, authorized: `answer` is called once it may be granted (at once for a
     * known filter). A clean client's subscription reaches the matcher inside `answer` (Aedes'
     * subscribe steps are synchronous for it), so a filter is never dropped between the two.
     */
    gate: (clientId: string, filter: string, persistent: boolean, answer: (granted: boolean) => void): void => {
      let pending: Promise<void> | undefined
      if (lasting.has(filter) || (!persistent && live.has(filter))) {
        pending = announcing.get(filter)
        if (pending === undefined) return answer(true)
      } else {
        if (persistent) lasting.add(filter)
        else live.add(filter)
        pending = hooks.added(filter, persistent)
        if (pending === undefined || filter.startsWith(Topics.replyPrefix)) {
          pending?.catch(() => undefined)
          return answer(true)
        }
        const announced = pending
        announcing.set(filter, announced)
        const done = () => {
          if (announcing.get(filter) === announced) announcing.delete(filter)
        }
        announced.then(done, done)
      }
      waiting.set(filter, (waiting.get(filter) ?? 0) + 1)
      const settle = (granted: boolean) => {
        try {
          answer(granted)
        } finally {
          const n = waiting.get(filter)! - 1
          if (n === 0) waiting.delete(filter)
          else waiting.set(filter, n)
          dropIfGone(filter)
        }
      }
      pending.then(
        () => settle(true),
        (error: unknown) => {
          logger.log("warn", "subscription refused: its filter was not announced", { client: clientId, filter, reason: Log.reason(error) })
          settle(false)
        }
      )
    },
    /** The matcher removed a subscription of `filter` (or every one: `undefined`). */
    removed: (filter: string | undefined) => {
      if (filter !== undefined) return dropIfGone(filter)
      for (const f of [...live]) dropIfGone(f)
    }
  }
}
