import { DataQuery, DataSourceJsonData } from '@grafana/schema';

/**
 * The JSON-datasource query model, stored as is in dashboards and alert rules.
 * `payload` is an object or a string holding JSON (both exist in saved dashboards);
 * any other keys a dashboard carries are kept untouched.
 */
export interface InhouseQuery extends DataQuery {
  target?: string;
  payload?: PayloadValue;
  [key: string]: unknown;
}

export type PayloadObject = Record<string, unknown>;
export type PayloadValue = PayloadObject | string;

/** Template variable query: `target` (+ optional payload) sent to the backend's `variable` endpoint. */
export interface InhouseVariableQuery extends DataQuery {
  target?: string;
  payload?: PayloadValue;
  [key: string]: unknown;
}

export interface InhouseOptions extends DataSourceJsonData {
  timeout?: number;
  tlsSkipVerify?: boolean;
  tlsAuth?: boolean;
  tlsAuthWithCACert?: boolean;
  serverName?: string;
  oauthPassThru?: boolean;
  maxConcurrentQueries?: number;
  maxConnections?: number;
  maxResponseBytes?: number;
  // httpHeaderName1..N
  [key: string]: unknown;
}

export interface InhouseSecureOptions {
  basicAuthPassword?: string;
  tlsCACert?: string;
  tlsClientCert?: string;
  tlsClientKey?: string;
  // httpHeaderValue1..N
  [key: string]: string | undefined;
}

export type PayloadFieldType = 'select' | 'multi-select' | 'input' | 'textarea';

export interface OptionDef {
  label?: string;
  value: string;
}

/** One entry of a metric's `payloads` (the backend's `metrics` answer). */
export interface PayloadDef {
  label?: string;
  name: string;
  type?: PayloadFieldType;
  placeholder?: string;
  reloadMetric?: boolean;
  width?: number;
  options?: OptionDef[];
}

export interface MetricDef {
  label?: string;
  value: string;
  payloads?: PayloadDef[];
}
