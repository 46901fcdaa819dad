/**
 * The worker's payload converter: the SDK's default, except that a payload it cannot decode
 * (an unknown encoding, bytes that are not JSON — `temporal workflow start --input-meta …`)
 * arrives as a marker instead of an exception. An exception there fails the workflow *task*,
 * which Temporal retries for ever: the run would stay Running, block its target and refuse
 * cancellation. The marker reaches the workflow's input check, which fails the run with
 * InvalidInput. Used inside the workflow sandbox too (payloadConverterPath).
 */
import { defaultPayloadConverter, type Payload, type PayloadConverter } from '@temporalio/common';

class TolerantPayloadConverter implements PayloadConverter {
  toPayload<T>(value: T): Payload {
    return defaultPayloadConverter.toPayload(value);
  }

  fromPayload<T>(payload: Payload): T {
    try {
      return defaultPayloadConverter.fromPayload<T>(payload);
    } catch (err) {
      return { __kohakkuDrUndecodable: (err as Error).message } as T;
    }
  }
}

export const payloadConverter = new TolerantPayloadConverter();
