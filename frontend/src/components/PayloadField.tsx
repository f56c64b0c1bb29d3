import React, { useEffect, useState } from 'react';
import { SelectableValue } from '@grafana/data';
import { InlineField, Input, MultiSelect, Select, TextArea } from '@grafana/ui';
import { errorMessage } from '../errors';
import { OptionDef, PayloadDef } from '../types';

interface Props {
  def: PayloadDef;
  value: unknown;
  disabled?: boolean;
  /** `undefined` removes the key from the payload. */
  onChange: (value: unknown) => void;
  /** Options from `metric-payload-options`, asked when a select without static options is opened. */
  loadOptions: () => Promise<OptionDef[]>;
}

const toSelectable = (o: OptionDef): SelectableValue<string> => ({ label: o.label || o.value, value: o.value });

function asString(v: unknown): string {
  if (v === undefined || v === null) {
    return '';
  }
  return typeof v === 'string' ? v : JSON.stringify(v);
}

function asList(v: unknown): string[] {
  if (Array.isArray(v)) {
    return v.map(asString);
  }
  return v === undefined || v === null || v === '' ? [] : [asString(v)];
}

/** One payload field as the metric's `payloads` entry describes it (select, multi-select, input, textarea). */
export function PayloadField({ def, value, disabled, onChange, loadOptions }: Props) {
  const type = def.type ?? 'input';
  const label = def.label || def.name;
  const width = def.width && def.width > 0 ? def.width : 30;
  const [loaded, setLoaded] = useState<OptionDef[] | undefined>(undefined);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<string | undefined>(undefined);
  const [text, setText] = useState(asString(value));

  useEffect(() => setText(asString(value)), [value]);

  const staticOptions = def.options && def.options.length > 0 ? def.options : undefined;
  const onOpenMenu = () => {
    if (staticOptions || loading) {
      return;
    }
    setLoading(true);
    setError(undefined);
    loadOptions()
      .then((opts) => setLoaded(opts))
      .catch((err: unknown) => setError(`Could not load options: ${errorMessage(err)}`))
      .finally(() => setLoading(false));
  };

  const options = (staticOptions ?? loaded ?? []).map(toSelectable);
  // Values typed by hand or set from a variable (`$host`) are shown even when not in the list.
  const withCurrent = (vals: string[]) => {
    const extra = vals.filter((v) => !options.some((o) => o.value === v)).map((v) => ({ label: v, value: v }));
    return [...options, ...extra];
  };
  const inputId = `payload-${def.name}`;

  let control: React.ReactElement;
  if (type === 'select') {
    const current = asString(value);
    control = (
      <Select<string>
        inputId={inputId}
        aria-label={label}
        width={width}
        disabled={disabled}
        isClearable
        allowCustomValue
        isLoading={loading}
        placeholder={def.placeholder}
        options={withCurrent(current ? [current] : [])}
        value={current || null}
        onOpenMenu={onOpenMenu}
        onChange={(v) => onChange(v?.value || undefined)}
      />
    );
  } else if (type === 'multi-select') {
    const current = asList(value);
    control = (
      <MultiSelect<string>
        inputId={inputId}
        aria-label={label}
        width={width}
        disabled={disabled}
        allowCustomValue
        isLoading={loading}
        placeholder={def.placeholder}
        options={withCurrent(current)}
        value={current}
        onOpenMenu={onOpenMenu}
        onChange={(vals) => {
          const list = vals.map((v) => v.value).filter((v): v is string => typeof v === 'string');
          onChange(list.length > 0 ? list : undefined);
        }}
      />
    );
  } else if (type === 'textarea') {
    control = (
      <TextArea
        id={inputId}
        aria-label={label}
        cols={width * 2}
        rows={3}
        disabled={disabled}
        placeholder={def.placeholder}
        value={text}
        onChange={(e) => setText(e.currentTarget.value)}
        onBlur={() => text !== asString(value) && onChange(text === '' ? undefined : text)}
      />
    );
  } else {
    control = (
      <Input
        id={inputId}
        aria-label={label}
        width={width}
        disabled={disabled}
        placeholder={def.placeholder}
        value={text}
        onChange={(e) => setText(e.currentTarget.value)}
        onBlur={() => text !== asString(value) && onChange(text === '' ? undefined : text)}
      />
    );
  }

  return (
    <InlineField label={label} labelWidth={20} invalid={!!error} error={error} htmlFor={inputId}>
      {control}
    </InlineField>
  );
}
