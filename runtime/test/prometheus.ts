/**
 * A strict parser of the Prometheus text exposition format 0.0.4, for the tests: it refuses what
 * a Prometheus server would (bad names, bad label syntax, bad values, a sample before its family's
 * TYPE, a series twice, histogram buckets that are not cumulative or lack +Inf, _count != +Inf).
 */
export interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

export interface Exposition {
  readonly types: ReadonlyMap<string, string>
  readonly samples: ReadonlyArray<Sample>
  /** The value of one series; undefined when absent. */
  readonly value: (name: string, labels?: Readonly<Record<string, string>>) => number | undefined
  /** The sum over every series of `name` whose labels include `labels`. */
  readonly sum: (name: string, labels?: Readonly<Record<string, string>>) => number
}

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const labelName = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const types = new Set(["counter", "gauge", "histogram", "summary", "untyped"])

const parseValue = (raw: string, line: string): number => {
  if (raw === "+Inf") return Infinity
  if (raw === "-Inf") return -Infinity
  if (raw === "NaN") return NaN
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(raw)) throw new Error(`bad value '${raw}' in: ${line}`)
  return Number(raw)
}

const parseLabels = (text: string, line: string): Record<string, string> => {
  const labels: Record<string, string> = {}
  let i = 0
  while (i < text.length) {
    const eq = text.indexOf("=", i)
    if (eq < 0) throw new Error(`bad labels in: ${line}`)
    const name = text.slice(i, eq).trim()
    if (!labelName.test(name)) throw new Error(`bad label name '${name}' in: ${line}`)
    if (text[eq + 1] !== '"') throw new Error(`unquoted label value in: ${line}`)
    let value = ""
    let j = eq + 2
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] === "\\") {
        const next = text[++j]
        if (next === "n") value += "\n"
        else if (next === "\\" || next === '"') value += next
        else throw new Error(`bad escape in: ${line}`)
      } else value += text[j]
    }
    if (j >= text.length) throw new Error(`unterminated label value in: ${line}`)
    if (name in labels) throw new Error(`label ${name} twice in: ${line}`)
    labels[name] = value
    i = j + 1
    if (text[i] === ",") i++
    else if (i < text.length) throw new Error(`expected ',' after a label in: ${line}`)
  }
  return labels
}

const keyOf = (name: string, labels: Readonly<Record<string, string>>) =>
  `${name}{${Object.keys(labels).sort().map((k) => `${k}=${JSON.stringify(labels[k])}`).join(",")}}`

const familyOf = (name: string, known: ReadonlyMap<string, string>): string | undefined => {
  if (known.has(name)) return name
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    const base = name.endsWith(suffix) ? name.slice(0, -suffix.length) : undefined
    if (base !== undefined && (known.get(base) === "histogram" || known.get(base) === "summary")) return base
  }
  return undefined
}

export const parse = (text: string): Exposition => {
  if (text !== "" && !text.endsWith("\n")) throw new Error("the exposition must end with a newline")
  const typeOf = new Map<string, string>()
  const samples: Array<Sample> = []
  const seen = new Set<string>()
  for (const line of text.split("\n")) {
    if (line === "") continue
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line)
      if (m === null) continue // a plain comment
      if (!metricName.test(m[2]!)) throw new Error(`bad metric name in: ${line}`)
      if (m[1] === "TYPE") {
        if (!types.has(m[3]!)) throw new Error(`unknown type in: ${line}`)
        if (typeOf.has(m[2]!)) throw new Error(`TYPE twice for ${m[2]}`)
        if (samples.some((s) => familyOf(s.name, new Map([[m[2]!, m[3]!]])) === m[2])) throw new Error(`TYPE after samples of ${m[2]}`)
        typeOf.set(m[2]!, m[3]!)
      }
      continue
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$/.exec(line)
    if (m === null) throw new Error(`bad sample line: ${line}`)
    const name = m[1]!
    const labels = m[2] === undefined ? {} : parseLabels(m[2], line)
    if (familyOf(name, typeOf) === undefined) throw new Error(`sample of ${name} without a TYPE before it`)
    const key = keyOf(name, labels)
    if (seen.has(key)) throw new Error(`series twice: ${key}`)
    seen.add(key)
    samples.push({ name, labels, value: parseValue(m[3]!, line) })
  }
  // Histograms: cumulative buckets ending at +Inf, which equals _count.
  for (const [family, type] of typeOf) {
    if (type !== "histogram") continue
    const groups = new Map<string, Array<Sample>>()
    for (const s of samples.filter((x) => x.name === `${family}_bucket`)) {
      const { le, ...rest } = s.labels
      if (le === undefined) throw new Error(`bucket of ${family} without le`)
      const k = keyOf(family, rest)
      groups.set(k, [...(groups.get(k) ?? []), s])
    }
    for (const [k, buckets] of groups) {
      const sorted = [...buckets].sort((a, b) => parseValue(a.labels.le!, k) - parseValue(b.labels.le!, k))
      sorted.forEach((b, i) => {
        if (i > 0 && b.value < sorted[i - 1]!.value) throw new Error(`buckets of ${k} are not cumulative`)
      })
      const inf = sorted.at(-1)!
      if (inf.labels.le !== "+Inf") throw new Error(`no +Inf bucket for ${k}`)
      const { le: _, ...rest } = inf.labels
      const count = samples.find((s) => s.name === `${family}_count` && keyOf(family, s.labels) === keyOf(family, rest))
      if (count?.value !== inf.value) throw new Error(`${family}_count differs from the +Inf bucket for ${k}`)
    }
  }
  const matches = (s: Sample, labels: Readonly<Record<string, string>>) => Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  return {
    types: typeOf,
    samples,
    value: (name, labels = {}) => samples.find((s) => s.name === name && keyOf(name, s.labels) === keyOf(name, labels))?.value,
    sum: (name, labels = {}) => samples.filter((s) => s.name === name && matches(s, labels)).reduce((n, s) => n + s.value, 0)
  }
}
