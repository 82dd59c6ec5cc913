import { RoundRef, defineStageQueue } from './stage-queue.js';

/** check.probe: runs the dual-agent probe (tester, sandbox, checker), checkpointing every step. */
export const checkProbeQueue = defineStageQueue('check.probe', RoundRef, 'runs the dual-agent probe (tester, sandbox, checker), checkpointing every step');
