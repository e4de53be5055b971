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
/** A processor's command channel in the mediator topology. */
export const channel = (processor: string): string => `${internalPrefix}channel/${processor}`
/** The workflow processor's queue: failed messages handed over for repair. */
export const repair = `${internalPrefix}repair`
/** Where repaired and corrected messages go back to their consumer, and only to it. */
export const resubmit = (processor: string): string => `${internalPrefix}resubmit/${processor}`
/** A domain mediator's queue: workflow starts, acknowledgements, timeouts, restarts. */
export const mediator = (domain: string): string => `${internalPrefix}mediator/${domain}`
