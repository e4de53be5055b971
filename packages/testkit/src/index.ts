export * as Process from "./Process.ts"
