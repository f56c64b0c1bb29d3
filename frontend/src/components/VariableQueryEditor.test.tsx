import React from 'react';
import { fireEvent, render, screen } from '@testing-library/react';
import { VariableQueryEditor } from './VariableQueryEditor';
import { newDataSource } from '../test/fixtures';
import { InhouseVariableQuery } from '../types';

describe('VariableQueryEditor', () => {
  it('edits target and payload, keeping other keys', () => {
    const onChange = jest.fn();
    const query: InhouseVariableQuery = { refId: 'v', target: 'hosts', other: 1 };
    render(<VariableQueryEditor datasource={newDataSource()} query={query} onChange={onChange} onRunQuery={jest.fn()} />);
    const target = screen.getByLabelText('Variable target');
    fireEvent.change(target, { target: { value: 'hosts.$region' } });
    fireEvent.blur(target);
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'v', target: 'hosts.$region', other: 1 });

    const payload = screen.getByLabelText('Variable payload');
    fireEvent.change(payload, { target: { value: '{"zone":"a"}' } });
    fireEvent.blur(payload);
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'v', target: 'hosts', other: 1, payload: { zone: 'a' } });
  });

  it('reads a plain string query as the target and rejects a bad payload', () => {
    const onChange = jest.fn();
    render(
      <VariableQueryEditor
        datasource={newDataSource()}
        query={'hosts' as unknown as InhouseVariableQuery}
        onChange={onChange}
        onRunQuery={jest.fn()}
      />
    );
    expect(screen.getByLabelText('Variable target')).toHaveValue('hosts');
    const payload = screen.getByLabelText('Variable payload');
    fireEvent.change(payload, { target: { value: 'nope' } });
    fireEvent.blur(payload);
    expect(screen.getByText(/not valid JSON/)).toBeInTheDocument();
    expect(onChange).not.toHaveBeenCalled();
  });
});
