/**
 * One line per lifecycle event: readable (`<time> <level> <event> key=value ...`) or, with
 * `BATON_LOG_FORMAT=json`, one JSON object (`{"time","level","event",...fields}`). Lines about a
 * message carry its `correlationId` and `traceId`.
 */
import { text } from "./Sensitive.ts"

export type Level = "debug" | "info" | "warn" | "error"
export const levels: ReadonlyArray<Level> = ["debug", "info", "warn", "error"]
export type Format = "text" | "json"

/**
 * The readable reason of anything thrown, card numbers masked (an error message may echo its input).
 * A failure that is not an `Error` (an app's `Effect.fail({ code: 503 })`) reads as its JSON.
 */
export const reason = (error: unknown): string => text(error instanceof Error ? error.message : typeof error === "object" && error !== null ? json(error) : String(error))

const json = (value: object): string => {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

export type Fields = Readonly<Record<string, string | number | boolean | undefined>>

export interface Logger {
  readonly log: (level: Level, event: string, fields?: Fields) => void
  /** The least level written (`info` when absent): a caller skips building a line below it. */
  readonly threshold?: Level
}

/** Whether a line of `level` would be written: check before building a costly debug line. */
export const enabled = (logger: Logger, level: Level): boolean => levels.indexOf(level) >= levels.indexOf(logger.threshold ?? "info")

const render = (value: string | number | boolean): string => {
  const s = String(value)
  return /[\s"=]/.test(s) || s === "" ? JSON.stringify(s) : s
}

export const format = (level: Level, event: string, fields: Fields = {}, at: Date = new Date()): string => {
  const parts = Object.entries(fields)
    .filter((entry): entry is [string, string | number | boolean] => entry[1] !== undefined)
    .map(([k, v]) => `${k}=${render(v)}`)
  return [at.toISOString(), level.toUpperCase().padEnd(5), event, ...parts].join(" ")
}

const reserved = new Set(["time", "level", "event"])

/** One JSON object: `time`, `level`, `event`, then the fields (one named like those gets a trailing `_`). */
export const formatJson = (level: Level, event: string, fields: Fields = {}, at: Date = new Date()): string => {
  const entries: Array<[string, string | number | boolean]> = [["time", at.toISOString()], ["level", level], ["event", event]]
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) entries.push([reserved.has(k) ? `${k}_` : k, v])
  // fromEntries defines each key, `__proto__` included, as a plain field.
  return JSON.stringify(Object.fromEntries(entries))
}

/** Lines of `threshold` and above, in `format`, to `write` (stdout for debug and info, stderr above by default). */
export const stream = (options: { readonly format?: Format; readonly threshold?: Level; readonly write?: (level: Level, line: string) => void } = {}): Logger => {
  const render = options.format === "json" ? formatJson : format
  const threshold = options.threshold ?? "info"
  const least = levels.indexOf(threshold)
  const write = options.write ?? ((level, line) => (level === "debug" || level === "info" ? process.stdout : process.stderr).write(`${line}\n`))
  return {
    threshold,
    log: (level, event, fields) => {
      if (levels.indexOf(level) >= least) write(level, render(level, event, fields))
    }
  }
}

export const console: Logger = stream()

/** Masks the card numbers in every field of every line (the runtime's logger goes through this). */
export const masked = (logger: Logger): Logger => ({
  ...(logger.threshold === undefined ? {} : { threshold: logger.threshold }),
  log: (level, event, fields = {}) =>
    logger.log(level, event, Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, typeof v === "string" ? text(v) : v])))
})

export const silent: Logger = { log: () => {} }

/** Keeps lines in memory (tests) and optionally forwards them. */
export const memory = (forward: Logger = silent): Logger & { readonly lines: Array<string> } => {
  const lines: Array<string> = []
  return {
    lines,
    log: (level, event, fields) => {
      lines.push(format(level, event, fields))
      forward.log(level, event, fields)
    }
  }
}

/**
 * A failure that recurs (a drain retried every 500 ms): one `error` line when a streak starts,
 * another only when the reason changes, and one `info` line (`back`) at the first success after it;
 * each line with `fields` (whose drain it is).
 */
export const streak = (logger: Logger, failed: string, back: string, fields: Fields = {}) => {
  let last: string | undefined
  return {
    failed: (error: unknown): void => {
      const why = reason(error)
      if (why === last) return
      last = why
      logger.log("error", failed, { ...fields, reason: why })
    },
    succeeded: (): void => {
      if (last === undefined) return
      last = undefined
      logger.log("info", back, fields)
    }
  }
}
