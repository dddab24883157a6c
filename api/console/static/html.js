// The console's one rendering kit: preact components written with htm's tagged templates (no JSX,
// so no build step). Every view imports from here, not from the vendored files.
import { h, render, Fragment, createContext } from "./vendor/preact.mjs";
import htm from "./vendor/htm.mjs";

export const html = htm.bind(h);
export { h, render, Fragment, createContext };
export {
  useState, useEffect, useRef, useMemo, useCallback, useContext, useReducer, useLayoutEffect,
} from "./vendor/preact-hooks.mjs";
