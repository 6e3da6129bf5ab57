// The ESM entry of llmr: the same module as the CommonJS one (one router, one relay).
import llmr from './index.js';

export const {
  init,
  reload,
  shutdown,
  isInitialized,
  modelCount,
  isAutoMode,
  routerInfo,
  stats,
  metrics,
  setLogger,
  version,
  complete,
  stream,
  LlmrStream,
  LlmrError,
  Status,
  statusName,
  AUTO_MODE_ID,
  libraryPath,
} = llmr;

export default llmr;
