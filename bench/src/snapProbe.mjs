// Preloaded into the runtime by `retainedSnap.ts` (NODE_OPTIONS=--import): on SIGURG writes a heap
// snapshot to SNAP_DIR/snap-<n>.heapsnapshot, then an empty SNAP_DIR/snap-<n>.done marker.
import v8 from "node:v8"
import { writeFileSync } from "node:fs"

let n = 0
process.on("SIGURG", () => {
  const i = n++
  v8.writeHeapSnapshot(`${process.env.SNAP_DIR}/snap-${i}.heapsnapshot`)
  writeFileSync(`${process.env.SNAP_DIR}/snap-${i}.done`, "")
})
