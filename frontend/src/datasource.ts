import {
  DataSourceInstanceSettings,
  MetricFindValue,
  ScopedVars,
  TimeRange,
} from '@grafana/data';
import { DataSourceWithBackend, getTemplateSrv, TemplateSrv } from '@grafana/runtime';
import { mapStrings, payloadObject } from './payload';
import { InhouseOptions, InhouseQuery, InhouseVariableQuery, MetricDef, OptionDef, PayloadObject } from './types';
import { toMetricFindValues } from './variableAnswer';
import { InhouseVariableSupport } from './variables';

/**
 * Every data query goes through the plugin backend (QueryData); the editors' pickers and template
 * variables go through its CallResource endpoints. The browser never talks to the in-house server.
 */
export class DataSource extends DataSourceWithBackend<InhouseQuery, InhouseOptions> {
  constructor(
    instanceSettings: DataSourceInstanceSettings<InhouseOptions>,
    // Injectable for tests; Grafana's own one otherwise (looked up late: it is set after plugins load).
    private readonly templateSrvOverride?: TemplateSrv
  ) {
    super(instanceSettings);
    this.variables = new InhouseVariableSupport(this);
  }

  private get templateSrv(): TemplateSrv {
    return this.templateSrvOverride ?? getTemplateSrv();
  }

  /** Hidden queries and queries without a metric are not sent (the backend would answer 400). */
  filterQuery(query: InhouseQuery): boolean {
    if (query.hide === true) {
      return false;
    }
    return typeof query.target === 'string' && query.target.trim() !== '';
  }

  /** Dashboard variables in `target` and in every string of the payload; the model keeps its shape. */
  applyTemplateVariables(query: InhouseQuery, scopedVars: ScopedVars): InhouseQuery {
    const replace = (s: string) => this.templateSrv.replace(s, scopedVars);
    const out: InhouseQuery = { ...query };
    if (typeof query.target === 'string') {
      out.target = replace(query.target);
    }
    if (typeof query.payload === 'string') {
      out.payload = replace(query.payload);
    } else if (query.payload !== undefined) {
      out.payload = mapStrings(query.payload, replace) as PayloadObject;
    }
    return out;
  }

  /** `metrics`: the metric list, given the current metric and payload (for `reloadMetric`). */
  async fetchMetrics(metric?: string, payload?: PayloadObject): Promise<MetricDef[]> {
    const answer: unknown = await this.postResource('metrics', { metric: metric ?? '', payload: payload ?? {} });
    if (!Array.isArray(answer)) {
      throw new Error('metrics: the backend did not answer a list');
    }
    return answer
      .filter((m): m is MetricDef => typeof m === 'object' && m !== null && m.value !== undefined)
      .map((m) => ({ ...m, value: String(m.value), payloads: Array.isArray(m.payloads) ? m.payloads : [] }));
  }

  /** `metric-payload-options`: the options of one select payload. */
  async fetchPayloadOptions(metric: string, payload: PayloadObject, name: string): Promise<OptionDef[]> {
    const answer: unknown = await this.postResource('metric-payload-options', { metric, payload, name });
    if (!Array.isArray(answer)) {
      throw new Error('metric-payload-options: the backend did not answer a list');
    }
    return answer
      .filter((o): o is OptionDef => typeof o === 'object' && o !== null && o.value !== undefined)
      .map((o) => ({ label: o.label, value: String(o.value) }));
  }

  /** Template variable values through `variable`. A plain string query (older dashboards) is the target. */
  async metricFindQuery(
    query: InhouseVariableQuery | string,
    options?: { range?: TimeRange; scopedVars?: ScopedVars }
  ): Promise<MetricFindValue[]> {
    const q: InhouseVariableQuery = typeof query === 'string' ? { refId: 'variable', target: query } : query;
    const scopedVars = options?.scopedVars ?? {};
    const replace = (s: string) => this.templateSrv.replace(s, scopedVars);
    const extra = payloadObject(q.payload) ?? {};
    const body: Record<string, unknown> = {
      payload: { ...(mapStrings(extra, replace) as PayloadObject), target: replace(q.target ?? '') },
    };
    if (options?.range) {
      body.range = {
        from: options.range.from.toISOString(),
        to: options.range.to.toISOString(),
        raw: options.range.raw,
      };
    }
    const answer: unknown = await this.postResource('variable', body);
    return toMetricFindValues(answer);
  }

  /** Ad-hoc filter keys through `tag-keys` (`[{type, text}]`). */
  async getTagKeys(): Promise<MetricFindValue[]> {
    const answer: unknown = await this.postResource('tag-keys', {});
    return toMetricFindValues(answer);
  }

  /** Ad-hoc filter values through `tag-values` (`[{text}]`). */
  async getTagValues(options: { key: string }): Promise<MetricFindValue[]> {
    const answer: unknown = await this.postResource('tag-values', { key: options.key });
    return toMetricFindValues(answer);
  }
}
