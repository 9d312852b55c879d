// Store URLs without opening a store: what the `ferry` front end (which links
// no store backend) needs before it hands a URL to ferryd.
#pragma once

#include <string>

namespace ferry::chunkstore {

// $FERRY_STORE if set; else file:///var/lib/ferry for root and
// file://$HOME/.local/share/ferry for other users.
std::string DefaultStoreUrl();

// The URL with a relative file-store path (a plain path or file://PATH,
// also inside fault+URL?options) made absolute against the working
// directory, and trailing slashes of a file path dropped. Anything else is
// returned as it is: OpenObjectStore judges it.
std::string AbsoluteStoreUrl(const std::string& url);

}  // namespace ferry::chunkstore
