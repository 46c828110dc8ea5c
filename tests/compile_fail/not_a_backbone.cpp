// expect: the first template argument must be a backbone
#include <halsal/nets/aliases.hpp>
halsal::HalSalNet<int, halsal::Depth<4>, halsal::AfterStage<4>> net(10);
