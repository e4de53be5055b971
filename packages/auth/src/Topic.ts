/** MQTT topic filter matching (MQTT 3.1.1, section 4.7). */
import { Topics } from "@baton/core"

/** True when `topic` (no wildcards) matches `filter` (defined with the topic contract). */
export const matches = Topics.matches

/** True when every topic that `filter` can match is matched by `pattern` (a subscription inside a grant). */
export const covers = (pattern: string, filter: string): boolean => {
  const p = pattern.split("/")
  const f = filter.split("/")
  if (filter.startsWith("$") && (p[0] === "#" || p[0] === "+")) return false
  for (let i = 0; i < p.length; i++) {
    if (p[i] === "#") return true
    if (i >= f.length) return false
    if (f[i] === "#") return false
    if (p[i] === "+") continue
    if (f[i] === "+" || f[i] !== p[i]) return false
  }
  return p.length === f.length
}

/** A publish topic must not hold wildcards [MQTT-3.3.2-2]; every filter level is valid [MQTT-4.7.1]. */
export const isValidTopic = (topic: string): boolean => topic.length > 0 && !/[+#\u0000]/.test(topic)

export const depth = (topic: string): number => topic.split("/").length
