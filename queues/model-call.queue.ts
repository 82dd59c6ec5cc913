import { ModelCallInput, ModelCallOutput } from '../src/stages/model-call.js';
import { baseJobOptions, defineQueue } from './define-queue.js';

/** One model call (chat or structured JSON) through the gateway; the result is stored by reference. */
export const modelCallQueue = defineQueue({
  name: 'model.call',
  description: 'one model call through the gateway (text or JSON validated against a JSON Schema)',
  data: ModelCallInput,
  result: ModelCallOutput,
  jobOptions: jobs => baseJobOptions(jobs),
  identity: data => ({ runId: data.runId, stage: data.stage, key: data.key, messages: data.messages, output: data.output }),
});
