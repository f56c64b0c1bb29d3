import React, { useEffect, useState } from 'react';
import { QueryEditorProps } from '@grafana/data';
import { InlineField, InlineFieldRow, Input, TextArea } from '@grafana/ui';
import type { DataSource } from '../datasource';
import { parsePayloadText, payloadText } from '../payload';
import { InhouseOptions, InhouseVariableQuery } from '../types';

type Props = QueryEditorProps<DataSource, InhouseVariableQuery, InhouseOptions, InhouseVariableQuery>;

/** A variable query is a `target` (and an optional JSON payload) sent to the backend's `variable` endpoint. */
export function VariableQueryEditor({ query, onChange }: Props) {
  // Variables saved by older JSON datasource versions hold a plain string: that is the target.
  const q: InhouseVariableQuery = typeof query === 'string' ? { refId: 'variable', target: query } : query ?? { refId: 'variable' };
  const [target, setTarget] = useState(q.target ?? '');
  const [raw, setRaw] = useState(payloadText(q.payload));
  const [rawError, setRawError] = useState<string | undefined>(undefined);

  useEffect(() => setTarget(q.target ?? ''), [q.target]);
  useEffect(() => setRaw(payloadText(q.payload)), [q.payload]);

  const commitTarget = () => {
    if (target !== (q.target ?? '')) {
      onChange({ ...q, target });
    }
  };

  const commitPayload = () => {
    if (raw === payloadText(q.payload)) {
      return;
    }
    if (raw.trim() === '') {
      setRawError(undefined);
      const next = { ...q };
      delete next.payload;
      onChange(next);
      return;
    }
    const parsed = parsePayloadText(raw);
    if ('error' in parsed) {
      setRawError(parsed.error);
      return;
    }
    setRawError(undefined);
    onChange({ ...q, payload: typeof q.payload === 'string' ? raw : parsed.payload });
  };

  return (
    <div data-testid="inhouse-variable-editor">
      <InlineFieldRow>
        <InlineField label="Target" labelWidth={20} grow tooltip="Sent as payload.target to the variable endpoint">
          <Input
            aria-label="Variable target"
            value={target}
            placeholder="e.g. hosts"
            onChange={(e) => setTarget(e.currentTarget.value)}
            onBlur={commitTarget}
          />
        </InlineField>
      </InlineFieldRow>
      <InlineFieldRow>
        <InlineField label="Payload (JSON)" labelWidth={20} grow invalid={!!rawError} error={rawError}>
          <TextArea
            aria-label="Variable payload"
            rows={3}
            value={raw}
            placeholder='{"region": "$region"}'
            onChange={(e) => setRaw(e.currentTarget.value)}
            onBlur={commitPayload}
          />
        </InlineField>
      </InlineFieldRow>
    </div>
  );
}
