import { GRAPH } from './graph.cases.js';
import { defineCases } from './harness.js';

defineCases(GRAPH);
