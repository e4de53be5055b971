import { Topics } from "@baton/core"

/** Topic filters, and whether any matches a topic: cached by topic until a filter is added or removed. */
export const make = () => {
  const all = new Set<string>()
  const hits = new Map<string, boolean>()
  return {
    add: (filter: string) => {
      if (all.has(filter)) return
      all.add(filter)
      hits.clear()
    },
    remove: (filter: string) => {
      if (all.delete(filter)) hits.clear()
    },
    matches: (topic: string): boolean => {
      let hit = hits.get(topic)
      if (hit === undefined) {
        hit = [...all].some((f) => Topics.matches(f, topic))
        if (hits.size >= 10_000) hits.clear()
        hits.set(topic, hit)
      }
      return hit
    }
  }
}
