/**
 * What a broker's clients subscribe to, known away from the broker (the front thread's main side,
 * docs/front-thread.md 4.3), fed by the broker's filter announcements (`EmbeddedBroker` option
 * `filters`): `wanted` and `hasSubscribers` answered synchronously from it.
 *
 * The rule it keeps is the broker's own `wanted`: it may say yes for nobody, never no for
 * somebody. The broker announces a filter before the SUBACK of its first subscription and drops it
 * only after its last live subscriber left the matcher, so the mirror holds every filter a client
 * holds. A persistent session's filter is never forgotten (an offline session gets its messages
 * queued). A count per live filter: a drop forgets a filter only once every announcement of it was
 * dropped, so an announcement repeated (two SUBSCRIBEs of a new filter at once) stays a yes.
 */
import type { FilterHooks } from "./Announcements.ts"
import * as Filters from "./Filters.ts"

export interface Mirror extends FilterHooks {
  /** Whether a filter held matches `topic`: a live subscription's or a persistent session's. */
  readonly wanted: (topic: string) => boolean
  /**
   * Whether a subscriber would get a message on `topic` now. The same answer as `wanted`: a
   * persistent session's filter may be a connected client's, and the mirror cannot tell.
   */
  readonly hasSubscribers: (topic: string) => boolean
}

/** A mirror holding `persistent` (the filters of the sessions stored before the broker started). */
export const make = (persistent: Iterable<string> = []): Mirror => {
  const held = Filters.make()
  const lasting = new Set<string>()
  const live = new Map<string, number>()
  for (const f of persistent) {
    lasting.add(f)
    held.add(f)
  }
  return {
    added: (filter, persistentSession) => {
      if (persistentSession) lasting.add(filter)
      else live.set(filter, (live.get(filter) ?? 0) + 1)
      held.add(filter)
      return undefined
    },
    dropped: (filter) => {
      const n = (live.get(filter) ?? 0) - 1
      if (n > 0) return void live.set(filter, n)
      live.delete(filter)
      if (!lasting.has(filter)) held.remove(filter)
    },
    wanted: held.matches,
    hasSubscribers: held.matches
  }
}
