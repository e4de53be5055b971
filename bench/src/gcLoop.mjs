// Preloaded into a runtime (`node --expose-gc --import`): a full (mark-compact) collection every
// $GCLOOP_MS ms (200). The test of "nepotism" (tail.ts, TAIL_GC=1, with
// RT_NODE_ARGS=--expose-gc RT_NODE_OPTIONS="--import bench/src/gcLoop.mjs"): what a scavenge promotes
// of an accept that a full collection, at any moment, finds dead was kept by something the scavenger
// takes for live without looking (old-to-new slots of dead old objects, WeakRef targets, the values
// of WeakMaps whose keys are old). At 200 accepts/s: 200 ms leaves no scavenge (the new space never
// fills), and each full collection promotes ~0.3 KB per accept (what is really in flight) where the
// scavenges promote 13-18 KB; 500 ms and 1000 ms: the scavenges promote 356 and 1257 pages per 1,000
// accepts (3300 without): the more scavenges since the last full collection, the more each promotes.
setInterval(() => globalThis.gc(), Number(process.env.GCLOOP_MS ?? 200)).unref()
