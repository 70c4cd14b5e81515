/**
 * The frames the agent parses at start (`warmUpProtocol`) must each be a message the connection would
 * act on, and must reach every schema an order nests: a made-up frame that stopped parsing (a schema
 * changed) or a kind left out (a new health check) would warm nothing, and nothing else would notice.
 */
import { ChangeSchema, COORDINATOR_MESSAGE_SINCE, HealthCheckSchema } from '@fleetpatch/shared';
import { expect, it } from 'vitest';
import { WARM_UP_FRAMES, warmUpProtocol } from '../src/protocol-warm-up.js';

const frames = WARM_UP_FRAMES.map((raw) => JSON.parse(raw) as Record<string, unknown>);

it('parses every made-up frame as a message, once per process', () => {
  const types = warmUpProtocol();
  expect(types).toEqual(frames.map((frame) => frame.type));
  expect(warmUpProtocol()).toBe(types);
});

it('has a frame of every order type the coordinator sends', () => {
  const orderTypes = Object.keys(COORDINATOR_MESSAGE_SINCE).filter((type) => type.startsWith('order.'));
  expect(new Set(frames.map((frame) => frame.type))).toEqual(new Set(orderTypes));
});

it('reaches every kind of change and every kind of health check', () => {
  const changes = frames.flatMap((frame) => (frame.change ? [(frame.change as { kind: string }).kind] : []));
  expect(new Set(changes)).toEqual(new Set(ChangeSchema.options.map((option) => option.shape.kind.value)));
  const checks = frames.flatMap((frame) =>
    ((frame.health as { checks?: { kind: string }[] } | undefined)?.checks ?? []).map((check) => check.kind),
  );
  expect(new Set(checks)).toEqual(new Set(HealthCheckSchema.options.map((option) => option.shape.kind.value)));
});
