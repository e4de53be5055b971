/**
 * `node bench/src/heapDiff.ts <before.heapsnapshot> <after.heapsnapshot> [top] [depth]`: what the
 * second snapshot holds that was allocated after the first (V8's object ids grow monotonically and
 * are kept across snapshots of one process), grouped by what keeps it: each new object's shortest
 * strong path from the roots is walked up to the first object that was already there (the anchor),
 * and the new objects are summed (count, self bytes) by the anchor's own retainer path (`depth`
 * steps) and the edge into the new part. A bounded structure that keeps its latest N entries (a
 * ring, a recent-list, an LRU) shows as its N newest entries under one anchor: what each accept
 * adds to it is promoted by a scavenge, and dies later in the old space.
 */
import { readFileSync } from "node:fs"

type Snap = { nodes: Int32Array | Array<number>; edges: Array<number>; strings: Array<string>; nodeFields: number; edgeFields: number; nodeTypes: Array<string>; edgeTypes: Array<string> }
const load = (file: string): Snap => {
  const s = JSON.parse(readFileSync(file, "utf8")) as { snapshot: { meta: { node_fields: Array<string>; edge_fields: Array<string>; node_types: [Array<string>]; edge_types: [Array<string>] } }; nodes: Array<number>; edges: Array<number>; strings: Array<string> }
  const m = s.snapshot.meta
  return { nodes: s.nodes, edges: s.edges, strings: s.strings, nodeFields: m.node_fields.length, edgeFields: m.edge_fields.length, nodeTypes: m.node_types[0], edgeTypes: m.edge_types[0] }
}
const [beforeFile, afterFile, topArg = "40", depthArg = "4"] = process.argv.slice(2)
const before = load(beforeFile!)
let maxId = 0
for (let i = 2; i < before.nodes.length; i += before.nodeFields) maxId = Math.max(maxId, before.nodes[i]!)
const s = load(afterFile!)
const NF = s.nodeFields
const EF = s.edgeFields
const n = s.nodes.length / NF
const type = (i: number) => s.nodeTypes[s.nodes[i * NF]!]!
const name = (i: number) => s.strings[s.nodes[i * NF + 1]!]!
const id = (i: number) => s.nodes[i * NF + 2]!
const size = (i: number) => s.nodes[i * NF + 3]!
const firstEdge = new Int32Array(n + 1)
for (let i = 0; i < n; i++) firstEdge[i + 1] = firstEdge[i]! + s.nodes[i * NF + 4]!
// Shortest strong paths from the root (node 0): weak edges do not retain.
const parent = new Int32Array(n).fill(-1)
const parentEdge = new Int32Array(n).fill(-1)
parent[0] = 0
const queue = new Int32Array(n)
let [head, tail] = [0, 1]
while (head < tail) {
  const i = queue[head++]!
  for (let e = firstEdge[i]!; e < firstEdge[i + 1]!; e++) {
    const et = s.edgeTypes[s.edges[e * EF]!]!
    if (et === "weak" || et === "shortcut") continue
    const to = s.edges[e * EF + 2]! / NF
    if (parent[to] !== -1) continue
    parent[to] = i
    parentEdge[to] = e
    queue[tail++] = to
  }
}
const edgeName = (e: number) => {
  const et = s.edgeTypes[s.edges[e * EF]!]!
  const v = s.edges[e * EF + 1]!
  return et === "element" || et === "hidden" ? `[${v}]` : s.strings[v]!
}
const label = (i: number) => `${type(i) === "object" || type(i) === "closure" ? name(i) : `(${type(i)}) ${name(i).slice(0, 40)}`}`
const path = (i: number, depth: number) => {
  const parts: Array<string> = []
  for (let k = 0, j = i; k < depth && j > 0; k++, j = parent[j]!) parts.push(`${label(j)}`.replace(/\n/g, " ") + (parentEdge[j]! >= 0 ? ` <-.${edgeName(parentEdge[j]!)}-` : ""))
  return parts.join(" ")
}
const depth = Number(depthArg)
const groups = new Map<string, { count: number; bytes: number; sample: number }>()
let [newCount, newBytes] = [0, 0]
for (let i = 1; i < n; i++) {
  if (id(i) <= maxId || parent[i] === -1) continue
  newCount++
  newBytes += size(i)
  // Up to the first object that was there before: the structure that keeps this one.
  let top = i
  while (parent[top]! > 0 && id(parent[top]!) > maxId) top = parent[top]!
  const anchor = parent[top]!
  const key = `${label(top)} <-.${edgeName(parentEdge[top]!)}- ${path(anchor, depth)}`
  const g = groups.get(key) ?? { count: 0, bytes: 0, sample: i }
  g.count++
  g.bytes += size(i)
  groups.set(key, g)
}
console.log(`new objects: ${newCount}, ${(newBytes / 1024).toFixed(0)} KB (ids > ${maxId})`)
for (const [k, g] of [...groups].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, Number(topArg))) console.log(`${(g.bytes / 1024).toFixed(1).padStart(8)} KB ${String(g.count).padStart(7)}  ${k}`)
