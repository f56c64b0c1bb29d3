import { CustomVariableSupport, DataQueryRequest, DataQueryResponse } from '@grafana/data';
import { from, map, Observable } from 'rxjs';
import { VariableQueryEditor } from './components/VariableQueryEditor';
import type { DataSource } from './datasource';
import { InhouseVariableQuery } from './types';

/** Variables of type "Query": the editor stores `{target, payload}`, values come from `variable`. */
export class InhouseVariableSupport extends CustomVariableSupport<DataSource, InhouseVariableQuery> {
  constructor(private readonly datasource: DataSource) {
    super();
  }

  editor = VariableQueryEditor;

  query(request: DataQueryRequest<InhouseVariableQuery>): Observable<DataQueryResponse> {
    const query = request.targets[0];
    return from(
      this.datasource.metricFindQuery(query, { range: request.range, scopedVars: request.scopedVars })
    ).pipe(map((data) => ({ data })));
  }
}
