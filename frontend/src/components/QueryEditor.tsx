import React, { useCallback, useEffect, useRef, useState } from 'react';
import { QueryEditorProps, SelectableValue } from '@grafana/data';
import { Alert, InlineField, InlineFieldRow, InlineSwitch, Select, TextArea } from '@grafana/ui';
import type { DataSource } from '../datasource';
import { errorMessage } from '../errors';
import { parsePayloadText, payloadObject, payloadText, withPayloadShape } from '../payload';
import { InhouseOptions, InhouseQuery, MetricDef, PayloadObject } from '../types';
import { PayloadField } from './PayloadField';

type Props = QueryEditorProps<DataSource, InhouseQuery, InhouseOptions>;

/**
 * The JSON-datasource editor: a metric picker fed by `metrics`, payload fields as the metric describes
 * them (options from `metric-payload-options` when not given), and a raw JSON payload as fallback.
 * Edits only ever set `target` and `payload`; every other key of the query is passed through.
 * Uses nothing dashboard-specific, so it also serves the alert rule editor.
 */
export function QueryEditor({ datasource, query, onChange, onRunQuery }: Props) {
  const [metrics, setMetrics] = useState<MetricDef[]>([]);
  const [loading, setLoading] = useState(true);
  const [loadError, setLoadError] = useState<string | undefined>(undefined);
  const [rawOpen, setRawOpen] = useState(false);
  const [rawText, setRawText] = useState(payloadText(query.payload));
  const [rawError, setRawError] = useState<string | undefined>(undefined);
  const lastRequest = useRef(0);

  const payload = payloadObject(query.payload);

  const loadMetrics = useCallback(
    (metric: string | undefined, current: PayloadObject) => {
      const id = ++lastRequest.current;
      setLoading(true);
      setLoadError(undefined);
      datasource
        .fetchMetrics(metric, current)
        .then((list) => id === lastRequest.current && setMetrics(list))
        .catch((err: unknown) => id === lastRequest.current && setLoadError(errorMessage(err)))
        .finally(() => id === lastRequest.current && setLoading(false));
    },
    [datasource]
  );

  // Once per data source: later reloads are asked for by `reloadMetric` payloads.
  useEffect(() => {
    loadMetrics(query.target, payload ?? {});
    const requests = lastRequest;
    return () => {
      requests.current++; // answers after unmount are dropped
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [loadMetrics]);

  useEffect(() => setRawText(payloadText(query.payload)), [query.payload]);

  const selected = metrics.find((m) => m.value === query.target);
  const options: Array<SelectableValue<string>> = metrics.map((m) => ({
    label: m.label || m.value,
    value: m.value,
  }));
  if (query.target && !selected) {
    // A target typed by hand or saved before the backend changed its list stays visible.
    options.push({ label: query.target, value: query.target });
  }

  const onMetricChange = (v: SelectableValue<string> | null) => {
    const target = v?.value ?? '';
    onChange({ ...query, target });
    onRunQuery();
  };

  const onPayloadFieldChange = (name: string, value: unknown, reloadMetric?: boolean) => {
    const next: PayloadObject = { ...(payload ?? {}) };
    if (value === undefined) {
      delete next[name];
    } else {
      next[name] = value;
    }
    onChange({ ...query, payload: withPayloadShape(query.payload, next) });
    onRunQuery();
    if (reloadMetric) {
      loadMetrics(query.target, next);
    }
  };

  const onRawBlur = () => {
    if (rawText === payloadText(query.payload)) {
      setRawError(undefined);
      return;
    }
    if (rawText.trim() !== '') {
      const parsed = parsePayloadText(rawText);
      if ('error' in parsed) {
        setRawError(parsed.error);
        return;
      }
      setRawError(undefined);
      // A string payload stays the text as typed; an object payload stays an object.
      onChange({ ...query, payload: typeof query.payload === 'string' ? rawText : parsed.payload });
      onRunQuery();
      return;
    }
    setRawError(undefined);
    onChange({ ...query, payload: typeof query.payload === 'string' ? '' : {} });
    onRunQuery();
  };

  const payloadDefs = selected?.payloads ?? [];
  const showRaw = rawOpen || !!loadError || payload === undefined;

  return (
    <div data-testid="inhouse-query-editor">
      <InlineFieldRow>
        <InlineField label="Metric" labelWidth={20} htmlFor={`metric-${query.refId}`} grow>
          <Select<string>
            inputId={`metric-${query.refId}`}
            aria-label="Metric"
            isLoading={loading}
            isClearable
            allowCustomValue
            placeholder={loading ? 'Loading metrics…' : 'Select a metric'}
            options={options}
            value={query.target || null}
            onChange={onMetricChange}
            width={40}
          />
        </InlineField>
        <InlineField label="Raw payload" tooltip="Edit the payload as JSON" htmlFor={`raw-toggle-${query.refId}`}>
          <InlineSwitch
            id={`raw-toggle-${query.refId}`}
            value={showRaw}
            disabled={!!loadError || payload === undefined}
            onChange={(e) => setRawOpen(e.currentTarget.checked)}
          />
        </InlineField>
      </InlineFieldRow>
      {loadError && (
        <Alert severity="error" title="Could not load metrics" data-testid="inhouse-metrics-error">
          {loadError}. The metric can still be typed, and the payload edited as JSON below.
        </Alert>
      )}
      {payloadDefs.map((def) => (
        <InlineFieldRow key={def.name}>
          <PayloadField
            def={def}
            value={payload?.[def.name]}
            disabled={payload === undefined}
            onChange={(v) => onPayloadFieldChange(def.name, v, def.reloadMetric)}
            loadOptions={() => datasource.fetchPayloadOptions(query.target ?? '', payload ?? {}, def.name)}
          />
        </InlineFieldRow>
      ))}
      {showRaw && (
        <InlineFieldRow>
          <InlineField
            label="Payload (JSON)"
            labelWidth={20}
            grow
            invalid={!!rawError || payload === undefined}
            error={rawError ?? (payload === undefined ? 'The saved payload is not a JSON object.' : undefined)}
            htmlFor={`raw-${query.refId}`}
          >
            <TextArea
              id={`raw-${query.refId}`}
              aria-label="Payload (JSON)"
              rows={5}
              value={rawText}
              placeholder='{"key": "value"}'
              onChange={(e) => setRawText(e.currentTarget.value)}
              onBlur={onRawBlur}
              style={{ fontFamily: 'monospace' }}
            />
          </InlineField>
        </InlineFieldRow>
      )}
    </div>
  );
}
