export * as Parking from "./Parking.ts"
export * as WorkflowProcessor from "./WorkflowProcessor.ts"
export * as ParkingPolicy from "./ParkingPolicy.ts"
