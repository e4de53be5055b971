/** `node bench/src/profileTop.ts <file.cpuprofile> [n]`: the top frames of a V8 CPU profile by self and by inclusive time. */
import { readFileSync } from "node:fs"

interface Node {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly children?: ReadonlyArray<number>
}
const [file, nArg = "25"] = process.argv.slice(2)
const profile = JSON.parse(readFileSync(file!, "utf8")) as { nodes: ReadonlyArray<Node>; samples: ReadonlyArray<number>; timeDeltas: ReadonlyArray<number> }
const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const parent = new Map<number, number>()
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
const selfUs = new Map<number, number>()
profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)))
const key = (n: Node) => `${n.callFrame.functionName || "(anonymous)"} ${n.callFrame.url.replace(/^.*\/(node_modules\/(?:\.pnpm\/)?)?/, "")}:${n.callFrame.lineNumber + 1}`
const self = new Map<string, number>()
const inclusive = new Map<string, number>()
let total = 0
for (const [id, us] of selfUs) {
  total += us
  const n = byId.get(id)!
  self.set(key(n), (self.get(key(n)) ?? 0) + us)
  // Each frame once per sample, however deep its recursion.
  const seen = new Set<string>()
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const k = key(byId.get(cur)!)
    if (seen.has(k)) continue
    seen.add(k)
    inclusive.set(k, (inclusive.get(k) ?? 0) + us)
  }
}
const top = (m: Map<string, number>, title: string) => {
  console.log(`${title} (of ${(total / 1000).toFixed(0)} ms)`)
  for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, Number(nArg)))
    console.log(`  ${((100 * us) / total).toFixed(1).padStart(5)}%  ${k}`)
}
top(self, "self")
top(inclusive, "inclusive")
