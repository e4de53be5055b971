export * as EmbeddedBroker from "./EmbeddedBroker.ts"
export * as Mirror from "./Mirror.ts"
