// Who is signed in, for any view: `const { me, config, signOut } = useAccount();`.
import { createContext, useContext } from "./html.js";

/** `{me, config, signOut, reloadMe}`: the user (`GET api/auth/me`) and `GET api/auth/config`. */
export const Account = createContext(null);
export const useAccount = () => useContext(Account);
