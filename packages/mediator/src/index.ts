export * as Machine from "./Machine.ts"
export * as Mediator from "./Mediator.ts"
export * as WorkflowStore from "./WorkflowStore.ts"
