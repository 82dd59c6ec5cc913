/**
 * Writes the reference environment's bundle, initial state, a 10,000-call mixed trace and its
 * check functions into fixtures/reference/ (deterministic: a seeded generator).
 *
 *   npx tsx scripts/gen-reference-env.ts
 */
import { readFileSync, writeFileSync } from 'node:fs';

const DIR = new URL('../fixtures/reference/', import.meta.url);
let seed = 20261126;
const rand = () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
const pad = (n: number, w: number) => String(n).padStart(w, '0');
const date = (day: number) => new Date(Date.UTC(2026, 2, 1) + day * 86_400_000).toISOString().slice(0, 10);

const str = { type: 'string' };
const dateStr = { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}$' };
const tool = (name: string, description: string, properties: Record<string, unknown>, required: string[]) => ({
  type: 'function',
  function: { name, description, parameters: { type: 'object', properties, required, additionalProperties: false } },
});
const tools = [
  tool('get_guest', 'Get a guest by id, with the number of reservations.', { guest_id: str }, ['guest_id']),
  tool('find_guest_by_email', 'Find a guest by email address.', { email: str }, ['email']),
  tool('get_room', 'Get a room by id.', { room_id: str }, ['room_id']),
  tool('search_available_rooms', 'Rooms free for the whole stay, with the price.', {
    check_in: dateStr, check_out: dateStr, room_type: { type: 'string', enum: ['single', 'double', 'suite'] },
    min_capacity: { type: 'integer', minimum: 1 }, limit: { type: 'integer', minimum: 1, maximum: 50 },
  }, ['check_in', 'check_out']),
  tool('get_reservation', 'Get a reservation by id.', { reservation_id: str }, ['reservation_id']),
  tool('list_guest_reservations', "A guest's reservations, optionally by status.", {
    guest_id: str, status: { type: 'string', enum: ['booked', 'checked_in', 'checked_out', 'cancelled'] },
  }, ['guest_id']),
  tool('create_reservation', 'Book a room for a guest; loyalty tiers get a discount.', {
    guest_id: str, room_id: str, check_in: dateStr, check_out: dateStr, guests: { type: 'integer', minimum: 1 },
  }, ['guest_id', 'room_id', 'check_in', 'check_out']),
  tool('cancel_reservation', 'Cancel a booked reservation (a fee applies within one day of arrival).', { reservation_id: str }, ['reservation_id']),
  tool('check_in', 'Check a guest in on the arrival day; the room must be clean.', { reservation_id: str }, ['reservation_id']),
  tool('check_out', 'Check a guest out; the stay is charged to the balance and the room becomes dirty.', { reservation_id: str }, ['reservation_id']),
  tool('change_room', 'Move a booked reservation to another free room, keeping its discount.', { reservation_id: str, new_room_id: str }, ['reservation_id', 'new_room_id']),
  tool('mark_room_clean', 'Housekeeping: mark a dirty room clean.', { room_id: str }, ['room_id']),
  tool('pay_balance', "Pay part or all of a guest's balance.", { guest_id: str, amount: { type: 'number', exclusiveMinimum: 0 } }, ['guest_id', 'amount']),
];

// ---- state: 60 rooms, 150 guests, ~220 reservations
const today = 10;
const rooms: Record<string, unknown> = {};
const roomIds: string[] = [];
for (let floor = 1; floor <= 5; floor += 1) {
  for (let n = 1; n <= 12; n += 1) {
    const id = `R${floor}${pad(n, 2)}`;
    const type = n <= 5 ? 'single' : n <= 10 ? 'double' : 'suite';
    roomIds.push(id);
    rooms[id] = {
      room_id: id, floor, type, capacity: type === 'single' ? 1 : type === 'double' ? 2 : 4,
      rate: type === 'single' ? 90 : type === 'double' ? 140 : 320,
      status: rand() < 0.05 ? 'out_of_order' : rand() < 0.2 ? 'dirty' : 'clean',
    };
  }
}
const first = ['Ana', 'Ben', 'Chloe', 'Dev', 'Eva', 'Femi', 'Gus', 'Hana', 'Ivo', 'Jun', 'Kira', 'Leo', 'Mona', 'Nils', 'Omar'];
const last = ['Silva', 'Okafor', 'Novak', 'Tanaka', 'Meyer', 'Rossi', 'Khan', 'Larsen', 'Dubois', 'Park'];
const guests: Record<string, { guest_id: string; name: string; email: string; loyalty_tier: string; balance: number }> = {};
const guestIds: string[] = [];
for (let i = 1; i <= 150; i += 1) {
  const id = `G${pad(i, 4)}`;
  const name = `${pick(first)} ${pick(last)}`;
  guestIds.push(id);
  guests[id] = { guest_id: id, name, email: `${name.toLowerCase().replace(' ', '.')}.${i}@example.com`, loyalty_tier: pick(['none', 'none', 'silver', 'gold']), balance: rand() < 0.3 ? Math.round(rand() * 40000) / 100 : 0 };
}
const reservations: Record<string, Record<string, unknown>> = {};
const roomRes: Record<string, string[]> = {};
const guestRes: Record<string, string[]> = {};
const taken: Record<string, [number, number][]> = {};
let seq = 1;
for (let tries = 0; seq <= 220 && tries < 5000; tries += 1) {
  const room = pick(roomIds);
  const r = rooms[room] as { capacity: number; rate: number; status: string };
  if (r.status === 'out_of_order') continue;
  const from = Math.floor(rand() * 40) - 5;
  const to = from + 1 + Math.floor(rand() * 5);
  if ((taken[room] ?? []).some(([a, b]) => a < to && from < b)) continue;
  (taken[room] ??= []).push([from, to]);
  const id = `RS${pad(seq, 5)}`;
  seq += 1;
  const guest = pick(guestIds);
  const status = to <= today ? pick(['checked_out', 'checked_out', 'cancelled']) : from <= today ? 'checked_in' : pick(['booked', 'booked', 'booked', 'cancelled']);
  reservations[id] = { reservation_id: id, guest_id: guest, room_id: room, check_in: date(from), check_out: date(to), guests: 1, status, total: r.rate * (to - from) };
  (roomRes[room] ??= []).push(id);
  (guestRes[guest] ??= []).push(id);
}
const state = {
  hotel: { name: 'Harbour View Hotel', current_date: date(today), cancellation_fee_rate: 0.2 },
  rooms, guests, reservations, room_reservations: roomRes, guest_reservations: guestRes, next_reservation_seq: seq,
};

// ---- a 10,000-call mixed trace (~25 % state changes, with invalid ids and bad arguments)
const resIds = Object.keys(reservations);
const calls: { tool: string; arguments: Record<string, unknown> }[] = [];
let nextRes = seq;
for (let i = 0; i < 10_000; i += 1) {
  const p = rand();
  const badId = rand() < 0.05;
  const g = badId ? 'G9999' : pick(guestIds);
  const rs = badId ? 'RS99999' : pick(resIds);
  const from = today + Math.floor(rand() * 30);
  if (p < 0.14) calls.push({ tool: 'get_guest', arguments: { guest_id: g } });
  else if (p < 0.2) calls.push({ tool: 'find_guest_by_email', arguments: { email: guests[pick(guestIds)]!.email } });
  else if (p < 0.3) calls.push({ tool: 'get_room', arguments: { room_id: pick(roomIds) } });
  else if (p < 0.42) calls.push({ tool: 'search_available_rooms', arguments: { check_in: date(from), check_out: date(from + 1 + Math.floor(rand() * 4)), ...(rand() < 0.5 ? { room_type: pick(['single', 'double', 'suite']) } : {}), limit: 5 } });
  else if (p < 0.57) calls.push({ tool: 'get_reservation', arguments: { reservation_id: rs } });
  else if (p < 0.7) calls.push({ tool: 'list_guest_reservations', arguments: { guest_id: g } });
  else if (p < 0.8) {
    calls.push({ tool: 'create_reservation', arguments: { guest_id: g, room_id: pick(roomIds), check_in: date(from), check_out: date(from + 1 + Math.floor(rand() * 3)) } });
    resIds.push(`RS${pad(nextRes, 5)}`);
    nextRes += 1;
  } else if (p < 0.84) calls.push({ tool: 'cancel_reservation', arguments: { reservation_id: rs } });
  else if (p < 0.87) calls.push({ tool: 'check_in', arguments: { reservation_id: rs } });
  else if (p < 0.9) calls.push({ tool: 'check_out', arguments: { reservation_id: rs } });
  else if (p < 0.93) calls.push({ tool: 'change_room', arguments: { reservation_id: rs, new_room_id: pick(roomIds) } });
  else if (p < 0.96) calls.push({ tool: 'mark_room_clean', arguments: { room_id: pick(roomIds) } });
  else if (p < 0.99) calls.push({ tool: 'pay_balance', arguments: { guest_id: g, amount: rand() < 0.1 ? -5 : Math.round(rand() * 10000) / 100 } });
  else calls.push({ tool: pick(['delete_all_rooms', 'get_guest']), arguments: pick([{ guest_id: 42 }, {}]) });
}

const checks = [
  { item: 'no room has two active reservations that overlap', check: `function check(finalState) {
  const day = d => Date.parse(d + 'T00:00:00Z') / 86400000;
  for (const ids of Object.values(finalState.room_reservations)) {
    const live = ids.map(id => finalState.reservations[id]).filter(r => r.status === 'booked' || r.status === 'checked_in');
    for (let i = 0; i < live.length; i++) for (let j = i + 1; j < live.length; j++)
      if (day(live[i].check_in) < day(live[j].check_out) && day(live[j].check_in) < day(live[i].check_out)) return false;
  }
  return true;
}` },
  { item: 'G0001 has no balance left', check: `function check(finalState) { return finalState.guests.G0001.balance === 0; }` },
  { item: 'more reservations exist than at the start', check: `function check(finalState, initialState) { return Object.keys(finalState.reservations).length > Object.keys(initialState.reservations).length; }` },
  { item: 'every checked-in reservation is in an occupied room', check: `function check(finalState) {
  return Object.values(finalState.reservations).filter(r => r.status === 'checked_in').every(r => ['occupied', 'dirty', 'clean'].includes(finalState.rooms[r.room_id].status));
}` },
];

const source = readFileSync(new URL('hotel-env.js', DIR), 'utf8');
writeFileSync(new URL('hotel-env.bundle.json', DIR), `${JSON.stringify({ name: 'Hotel reservations', className: 'HotelReservations', source, tools }, null, 1)}\n`);
writeFileSync(new URL('hotel-state.json', DIR), `${JSON.stringify(state)}\n`);
writeFileSync(new URL('hotel-calls.jsonl', DIR), `${calls.map(c => JSON.stringify(c)).join('\n')}\n`);
writeFileSync(new URL('hotel-checks.json', DIR), `${JSON.stringify(checks, null, 1)}\n`);
console.log(`rooms ${roomIds.length}, guests ${guestIds.length}, reservations ${seq - 1}, calls ${calls.length}`);
