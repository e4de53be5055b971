/**
 * What the runtime's event loop ran during its stalls: the samples of a V8 CPU profile
 * (`--cpu-prof`) that fall inside the stalls the probe saw (`tailProbe.mjs`, in the monotonic
 * clock's microseconds, the profile's own clock), summed by their first frames under the root (the
 * event loop's phase and what it called) and by the function they were in (self time).
 */
import { readFileSync } from "node:fs"

export interface CpuProfile {
  readonly nodes: ReadonlyArray<{ readonly id: number; readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }; readonly children?: ReadonlyArray<number> }>
  readonly startTime: number
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

export interface Attribution {
  /** Microseconds of samples inside the stalls, and the stalls' own length. */
  readonly sampled: number
  readonly stalled: number
  /** Microseconds by the first `depth` frames under the root, most first. */
  readonly byPath: ReadonlyArray<readonly [string, number]>
  /** Microseconds by the sampled function, most first. */
  readonly bySelf: ReadonlyArray<readonly [string, number]>
}

const frameName = (frame: CpuProfile["nodes"][number]["callFrame"]) =>
  `${frame.functionName || "(anonymous)"} ${frame.url.split("/").slice(-2).join("/")}:${frame.lineNumber}`

/** `stalls`: [start, duration] in microseconds of the monotonic clock. */
export const attribute = (profile: CpuProfile, stalls: ReadonlyArray<readonly [number, number]>, depth = 3): Attribution => {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const path = (id: number): Array<string> => {
    const names: Array<string> = []
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) names.push(frameName(byId.get(at)!.callFrame))
    // Without the root: the first frame is the loop's phase (processImmediate, a socket's read, the GC).
    return names.reverse().slice(1, 1 + depth)
  }
  // A sample at t stands for the time until the next sample.
  const times: Array<number> = []
  let t = profile.startTime
  for (const delta of profile.timeDeltas) times.push((t += delta))
  const byPath = new Map<string, number>()
  const bySelf = new Map<string, number>()
  let sampled = 0
  let stalled = 0
  const sorted = [...stalls].sort((a, b) => a[0] - b[0])
  let first = 0
  for (const [start, duration] of sorted) {
    stalled += duration
    while (first < times.length && times[first]! < start) first++
    for (let i = first; i < times.length && times[i]! < start + duration; i++) {
      const span = Math.min(times[i + 1] ?? times[i]!, start + duration) - times[i]!
      const id = profile.samples[i]!
      sampled += span
      const key = path(id).join(" > ")
      byPath.set(key, (byPath.get(key) ?? 0) + span)
      const self = frameName(byId.get(id)!.callFrame)
      bySelf.set(self, (bySelf.get(self) ?? 0) + span)
    }
  }
  const ranked = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1])
  return { sampled, stalled, byPath: ranked(byPath), bySelf: ranked(bySelf) }
}

/** The report `tail.ts` prints (`TAIL_PROFILE`): the top `n` of each ranking. */
export const report = (profilePath: string, stalls: ReadonlyArray<readonly [number, number]>, n = 15): string => {
  const a = attribute(JSON.parse(readFileSync(profilePath, "utf8")) as CpuProfile, stalls)
  const ms = (us: number) => `${(us / 1000).toFixed(0).padStart(6)} ms`
  return [
    `CPU profile in the stalls: ${(a.sampled / 1000).toFixed(0)} ms sampled of ${(a.stalled / 1000).toFixed(0)} ms stalled (${profilePath})`,
    "  by the first frames:",
    ...a.byPath.slice(0, n).map(([k, us]) => `  ${ms(us)}  ${k}`),
    "  by function (self):",
    ...a.bySelf.slice(0, n).map(([k, us]) => `  ${ms(us)}  ${k}`)
  ].join("\n")
}
