/**
 * The topic contract, defined once. Clients publish initiating events on `initiate/<name>`, watch
 * processing events on `events/<name>` and rejections on `errors/<original topic>`.
 */
export const initiatePrefix = "initiate/"
export const eventsPrefix = "events/"
export const errorsPrefix = "errors/"
/** Initiating events after validation, as full envelopes; internal to the runtime. */
export const acceptedPrefix = "accepted/"

/** The runtime's own channels (mediator commands and acknowledgements); never broadcast. */
export const internalPrefix = "baton/"

export const initiate = (name: string): string => `${initiatePrefix}${name}`
export const event = (name: string): string => `${eventsPrefix}${name}`
export const accepted = (name: string): string => `${acceptedPrefix}${name}`
export const error = (originalTopic: string): string => `${errorsPrefix}${originalTopic}`

export const allInitiating = `${initiatePrefix}#`
export const allEvents = `${eventsPrefix}#`
export const allErrors = `${errorsPrefix}#`

/** The name of an initiating event from its topic, or undefined for another topic. */
export const initiatingName = (topic: string): string | undefined =>
  topic.startsWith(initiatePrefix) ? topic.slice(initiatePrefix.length) : undefined

const kebab = /^[a-z0-9]+(-[a-z0-9]+)*$/

/** Event and command names are kebab-case, one topic level. */
export const isEventName = (name: string): boolean => kebab.test(name)

/** The topic a client knows a message by: an accepted initiating event is reported on its `initiate/` topic. */
export const publicTopic = (topic: string): string =>
  topic.startsWith(acceptedPrefix) ? initiate(topic.slice(acceptedPrefix.length)) : topic

export const isInternal = (topic: string): boolean => topic.startsWith(internalPrefix)

/** Replies to requests: a client's reply topics are `reply/<its client id>/...`. */
export const replyPrefix = "reply/"
export const isReply = (topic: string): boolean => topic.startsWith(replyPrefix)

/**
 * Why `replyTo` is not acceptable from `clientId`, or undefined when it is: a reply topic of the
 * client itself, without wildcards (no client can have replies sent to another's topics).
 */
export const replyToProblem = (replyTo: string, clientId: string | null): string | undefined => {
  if (!/^reply\/[^/#+]+(\/[^/#+]+)+$/.test(replyTo)) return "must be a topic reply/<your client id>/<anything>, without wildcards"
  if (clientId !== null && !replyTo.startsWith(`${replyPrefix}${clientId}/`)) return `must start with reply/${clientId}/ (your client id)`
  return undefined
}
/** A processor's command channel in the mediator topology. */
export const channel = (processor: string): string => `${internalPrefix}channel/${processor}`
/** The workflow processor's queue: failed messages handed over for repair. */
export const repair = `${internalPrefix}repair`
/** Where repaired and corrected messages go back to their consumer, and only to it. */
export const resubmit = (processor: string): string => `${internalPrefix}resubmit/${processor}`
/** A domain mediator's queue: workflow starts, acknowledgements, timeouts, restarts. */
export const mediator = (domain: string): string => `${internalPrefix}mediator/${domain}`

/**
 * True when `topic` (no wildcards) matches the MQTT filter `filter` (MQTT 3.1.1, section 4.7;
 * `a/#` matches `a`). Wildcards do not match `$` topics at level one [MQTT-4.7.2-1].
 */
export const matches = (filter: string, topic: string): boolean => {
  const f = filter.split("/")
  const t = topic.split("/")
  if (topic.startsWith("$") && (f[0] === "#" || f[0] === "+")) return false
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true
    if (i >= t.length) return false
    if (f[i] !== "+" && f[i] !== t[i]) return false
  }
  return f.length === t.length
}
