// Preloaded into a runtime by `allocation.ts` (`node --import`): the first SIGUSR2 starts V8's
// sampling heap profiler, keeping the samples of objects collected since (garbage is what a
// scavenge costs); the second stops it and writes the profile to $BATON_HEAP_OUT.
import { Session } from "node:inspector"
import { writeFileSync } from "node:fs"

const session = new Session()
session.connect()
let signals = 0
process.on("SIGUSR2", () => {
  signals++
  if (signals === 1)
    session.post("HeapProfiler.startSampling", { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true })
  else if (signals === 2)
    session.post("HeapProfiler.stopSampling", (error, result) => {
      if (error !== null) console.error(error)
      else writeFileSync(process.env.BATON_HEAP_OUT, JSON.stringify(result.profile))
      console.error("heap profile written")
    })
})
