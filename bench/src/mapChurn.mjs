// Preloaded into a runtime (`node --import`, RT_NODE_OPTIONS of tail.ts): every Map and Set made with
// `new` (a subclass stands in for the global ones; Node's own primordials' SafeMap/SafeSet are not
// seen) counts its successful deletes and its clears by where it was made; the top 40 are written to
// $CHURN_OUT every 2 s. A Map or Set that adds and deletes an entry per message replaces its hash
// table every few messages (V8's OrderedHashTable), and the table it leaves keeps its entries and a
// pointer to the new table until a mark-compact: once one such table is in the old space, every
// later one (and what their entries held when they were replaced) survives the scavenges
// (tableChain.mjs shows it alone). Measured at 200 accepts/s: only Consumer's `inFlight` and
// `running` churn (one delete per submitted message each); everything else is start-up.
import fs from "node:fs"

const sites = new Map()
const OrigMap = globalThis.Map
const OrigSet = globalThis.Set
const tag = Symbol("site")
const siteOf = () =>
  new Error().stack
    .split("\n")
    .slice(3, 7)
    .map((l) => l.trim().replace(/^at /, "").replace(/file:\/\/\/work\/[^/]+\//, "").replace(/.*node_modules\/\.pnpm\/[^/]+\/node_modules\//, ""))
    .join(" < ")
const count = (o, what) => {
  const site = o[tag]
  if (site !== undefined) sites.set(`${what} ${site}`, (sites.get(`${what} ${site}`) ?? 0) + 1)
}
globalThis.Map = class Map extends OrigMap {
  constructor(it) {
    super(it)
    this[tag] = siteOf()
  }
  delete(k) {
    const r = super.delete(k)
    if (r) count(this, "delete")
    return r
  }
  clear() {
    if (this.size > 0) count(this, "clear")
    return super.clear()
  }
}
globalThis.Set = class Set extends OrigSet {
  constructor(it) {
    super(it)
    this[tag] = siteOf()
  }
  delete(k) {
    const r = super.delete(k)
    if (r) count(this, "delete")
    return r
  }
  clear() {
    if (this.size > 0) count(this, "clear")
    return super.clear()
  }
}
setInterval(() => {
  const top = [...sites.entries()].sort((a, b) => b[1] - a[1]).slice(0, 40)
  fs.writeFileSync(process.env.CHURN_OUT ?? "churn.txt", top.map(([s, n]) => `${n}\t${s}`).join("\n") + "\n")
}, 2000).unref()
