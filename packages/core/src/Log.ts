/** One readable line per lifecycle event: `<time> <level> <event> key=value ...`. */
import { text } from "./Sensitive.ts"

export type Level = "info" | "warn" | "error"

/** The readable reason of anything thrown, card numbers masked (an error message may echo its input). */
export const reason = (error: unknown): string => text(error instanceof Error ? error.message : String(error))

export type Fields = Readonly<Record<string, string | number | boolean | undefined>>

export interface Logger {
  readonly log: (level: Level, event: string, fields?: Fields) => void
}

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

export const console: Logger = {
  log: (level, event, fields) => {
    const line = format(level, event, fields)
    if (level === "info") process.stdout.write(`${line}\n`)
    else process.stderr.write(`${line}\n`)
  }
}

/** Masks the card numbers in every field of every line (the runtime's logger goes through this). */
export const masked = (logger: Logger): Logger => ({
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
