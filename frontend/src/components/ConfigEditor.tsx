import React, { ChangeEvent } from 'react';
import { DataSourcePluginOptionsEditorProps } from '@grafana/data';
import { DataSourceHttpSettings, FieldSet, InlineField, Input } from '@grafana/ui';
import { InhouseOptions, InhouseSecureOptions } from '../types';

type Props = DataSourcePluginOptionsEditorProps<InhouseOptions, InhouseSecureOptions>;

type LimitKey = 'maxConcurrentQueries' | 'maxConnections' | 'maxResponseBytes';

const LIMITS: Array<{ key: LimitKey; label: string; tooltip: string; placeholder: string }> = [
  {
    key: 'maxConcurrentQueries',
    label: 'Max concurrent queries',
    tooltip: 'Fetches in flight per query request (one POST /query per query).',
    placeholder: '16',
  },
  {
    key: 'maxConnections',
    label: 'Max connections',
    tooltip: 'Open connections to the backend per data source; beyond it fetches queue.',
    placeholder: '64',
  },
  {
    key: 'maxResponseBytes',
    label: 'Max response bytes',
    tooltip: "Larger answers fail the query. Grafana's response_limit also applies.",
    placeholder: '67108864',
  },
];

/**
 * Grafana's standard HTTP settings (URL, timeout, basic auth, custom headers, TLS, forward OAuth),
 * which keep secrets in secureJsonData and only show "configured" + reset for them, plus our limits.
 */
export function ConfigEditor({ options, onOptionsChange }: Props) {
  const jsonData = options.jsonData ?? {};

  const onLimitChange = (key: LimitKey) => (e: ChangeEvent<HTMLInputElement>) => {
    const text = e.currentTarget.value.trim();
    const next: InhouseOptions = { ...jsonData };
    const n = Number(text);
    if (text === '') {
      // Empty means "backend default": drop the key rather than storing 0.
      delete next[key];
    } else if (Number.isInteger(n) && n > 0) {
      next[key] = n;
    } else {
      return;
    }
    onOptionsChange({ ...options, jsonData: next });
  };

  // Grafana's HTTP settings show "ServerName" only with TLS client auth; our backend
  // uses it for any https URL (a CA-only or skip-verify setup may need it too).
  const onServerNameChange = (e: ChangeEvent<HTMLInputElement>) => {
    const next: InhouseOptions = { ...jsonData };
    const name = e.currentTarget.value.trim();
    if (name === '') {
      delete next.serverName;
    } else {
      next.serverName = name;
    }
    onOptionsChange({ ...options, jsonData: next });
  };

  return (
    <>
      <DataSourceHttpSettings
        defaultUrl="http://localhost:8080"
        dataSourceConfig={options}
        onChange={onOptionsChange}
        showAccessOptions={false}
      />
      {!jsonData.tlsAuth && (
        <FieldSet label="TLS">
          <InlineField
            label="Server name"
            labelWidth={26}
            tooltip="The name the backend's certificate is checked against (and sent as SNI); empty: the URL's host."
          >
            <Input
              id="inhouse-serverName"
              data-testid="inhouse-serverName"
              width={40}
              placeholder="metrics.example.com"
              value={jsonData.serverName ?? ''}
              onChange={onServerNameChange}
            />
          </InlineField>
        </FieldSet>
      )}
      <FieldSet label="Limits">
        {LIMITS.map(({ key, label, tooltip, placeholder }) => (
          <InlineField key={key} label={label} labelWidth={26} tooltip={tooltip}>
            <Input
              id={`inhouse-${key}`}
              data-testid={`inhouse-${key}`}
              type="number"
              min={1}
              width={20}
              placeholder={placeholder}
              value={jsonData[key] ?? ''}
              onChange={onLimitChange(key)}
            />
          </InlineField>
        ))}
      </FieldSet>
    </>
  );
}
