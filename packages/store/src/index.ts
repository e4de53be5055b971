export * as Sqlite from "./Sqlite.ts"
export type { Store, Migration } from "./Sqlite.ts"
export * as Rejections from "./Rejections.ts"
