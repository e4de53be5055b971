// Preloaded into a runtime by `allocation.ts` (`node --import`): the first SIGUSR2 starts V8's
// sampling heap profiler, keeping the samples of objects collected since (garbage is what a
// scavenge costs); the second stops it and writes the profile to $BATON_HEAP_OUT. With
// BATON_HEAP_PROMOTED=1 (`promoted.ts`) the samples of objects a scavenge collected are dropped:
// what is left survived its scavenges (promoted, whether a mark-compact collected it later or not).
// With BATON_HEAP_LIVE=1 too, only what a full collection at the end still finds retained.
import { Session } from "node:inspector"
import { writeFileSync } from "node:fs"

const session = new Session()
session.connect()
let signals = 0
process.on("SIGUSR2", () => {
  signals++
  if (signals === 1)
    session.post("HeapProfiler.startSampling", { samplingInterval: 4096, includeObjectsCollectedByMajorGC: process.env.BATON_HEAP_LIVE !== "1", includeObjectsCollectedByMinorGC: process.env.BATON_HEAP_PROMOTED !== "1" })
  else if (signals === 2)
    // BATON_HEAP_LIVE=1: a full collection first, and only what it kept (what is still retained).
    (process.env.BATON_HEAP_LIVE === "1" ? (f) => session.post("HeapProfiler.collectGarbage", () => f()) : (f) => f())(() => session.post("HeapProfiler.stopSampling", (error, result) => {
      if (error !== null) console.error(error)
      else writeFileSync(process.env.BATON_HEAP_OUT, JSON.stringify(result.profile))
      console.error("heap profile written")
    }))
})
