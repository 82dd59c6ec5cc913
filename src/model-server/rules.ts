/**
 * Rule selection for the scripted model server: compiles a script's rules
 * once (regexes, stage globs) and hands out rules in order, counting uses.
 */
import type { ModelScript, RuleEndpoint, ScriptedResponse, ScriptRule } from './fixtures.js';

/** What a rule is matched against. */
export interface RuleQuery {
  endpoint: RuleEndpoint;
  /** Value of the `X-Envfleet-Stage` header, or null when absent. */
  stage: string | null;
  model: string | null;
  /** Last user message (chat) or one input (embeddings). */
  text: string;
  /** Compact `JSON.stringify` of the whole parsed request body. */
  serializedBody: string;
  /** `ROLE: CONTENT` of the last message (chat), or the input (embeddings). */
  last?: string;
}

/** A rule chosen for one use (one chat choice, or one embeddings input). */
export interface RulePick {
  rule: ScriptRule;
  /** The rule's name, or `#<index>` (0-based position in the script's rules). */
  label: string;
  /** 0-based use number of this rule: the k-th use answers with `responses[k]`. */
  use: number;
}

interface CompiledRule {
  rule: ScriptRule;
  label: string;
  endpoint: RuleEndpoint;
  stage: RegExp | undefined;
  match: RegExp | undefined;
  matchAny: RegExp | undefined;
  matchLast: RegExp | undefined;
  uses: number;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** `mine.*` → /^mine\..*$/ ; without `*` the stage must match exactly (case-sensitive). */
export function stageGlobToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.split('*').map(escapeRegExp).join('.*')}$`);
}

function compileRule(rule: ScriptRule, index: number): CompiledRule {
  return {
    rule,
    label: rule.name ?? `#${index}`,
    endpoint: rule.endpoint ?? 'chat',
    stage: rule.stage === undefined ? undefined : stageGlobToRegExp(rule.stage),
    match: rule.match === undefined ? undefined : new RegExp(rule.match, 'i'),
    matchAny: rule.matchAny === undefined ? undefined : new RegExp(rule.matchAny, 'i'),
    matchLast: rule.matchLast === undefined ? undefined : new RegExp(rule.matchLast, 'i'),
    uses: 0,
  };
}

function matches(compiled: CompiledRule, query: RuleQuery): boolean {
  const { rule } = compiled;
  if (compiled.endpoint !== query.endpoint) return false;
  if (rule.times !== undefined && compiled.uses >= rule.times) return false;
  if (compiled.stage !== undefined && (query.stage === null || !compiled.stage.test(query.stage))) return false;
  if (rule.model !== undefined && rule.model !== query.model) return false;
  if (compiled.match !== undefined && !compiled.match.test(query.text)) return false;
  if (compiled.matchAny !== undefined && !compiled.matchAny.test(query.serializedBody)) return false;
  if (compiled.matchLast !== undefined && !compiled.matchLast.test(query.last ?? query.text)) return false;
  return true;
}

/** The ordered, stateful rule list of one script. */
export class RuleBook {
  readonly #rules: CompiledRule[];
  #injected = 0;

  constructor(script: ModelScript) {
    this.#rules = (script.rules ?? []).map(compileRule);
  }

  /** Finds the first matching rule that still has uses left and consumes one use of it. */
  pick(query: RuleQuery): RulePick | undefined {
    const compiled = this.#rules.find((candidate) => matches(candidate, query));
    if (compiled === undefined) return undefined;
    const use = compiled.uses++;
    return { rule: compiled.rule, label: compiled.label, use };
  }

  /** The rule `pick` would choose, without using it. */
  peek(query: RuleQuery): ScriptRule | undefined {
    return this.#rules.find((candidate) => matches(candidate, query))?.rule;
  }

  /**
   * Puts rules ahead of the others (a rule without a name is labelled `injected#<k>`, k counting every
   * injected rule); the rules already there keep their use counters.
   */
  prepend(rules: readonly ScriptRule[]): void {
    const compiled = rules.map((rule) => {
      const c = compileRule(rule, 0);
      c.label = rule.name ?? `injected#${this.#injected++}`;
      return c;
    });
    this.#rules.unshift(...compiled);
  }

  /** Forgets all uses, so `times` and `responses` sequences start over. */
  resetCounters(): void {
    for (const compiled of this.#rules) compiled.uses = 0;
  }
}

/** The scripted response for a pick: `respond`, or `responses[use]` (the last one repeats). */
export function responseFor(pick: RulePick): ScriptedResponse | undefined {
  const { respond, responses } = pick.rule;
  if (respond !== undefined) return respond;
  if (responses === undefined) return undefined;
  return responses[Math.min(pick.use, responses.length - 1)];
}
