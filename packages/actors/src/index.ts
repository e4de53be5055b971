export * as Policy from "./Policy.ts"
export * as Supervisor from "./Supervisor.ts"
